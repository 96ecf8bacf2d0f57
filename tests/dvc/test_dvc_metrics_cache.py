"""In a DVC test repository: `dvc metrics show` lists the report's numbers through the generated top-level
`metrics:`/`plots:`, and a checkpoint directory (final/) under the documented cache link strategy
(cache.type reflink,hardlink,symlink; docs/hpc.md) is stored once on disk, not in the workspace and the cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cpt.report.series import write_series
from cpt.workflow.dvc_metrics import metrics_and_plots

pytestmark = [pytest.mark.dvc]


def sh(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # this venv's dvc
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"{' '.join(cmd)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


class G:  # the two groups metrics_and_plots reads (cpt.workflow.dvc.Group's fields it uses)
    def __init__(self, name, outs, targets=()):
        self.name, self.outs, self.targets = name, outs, list(targets)


def test_dvc_metrics_show_lists_report_numbers_and_plots_render(tmp_path):
    root = tmp_path / "repo"
    report = root / "results/x/report"
    report.mkdir(parents=True)
    data = {"points": ["base", "replay"], "train": {"replay": [{"step": 1, "tokens": 64, "loss": 5.5},
                                                                {"step": 2, "tokens": 128, "loss": 4.25}]},
            "bpb": {p: {"languages": {"zh": {"bits_per_byte": b}, "en": {"bits_per_byte": b + 1}}}
                    for p, b in (("base", 3.5), ("replay", 1.75))}}
    (report / "report.json").write_text(json.dumps({"bpb": {p: v["languages"] for p, v in data["bpb"].items()},
                                                    "train_final_loss": {"replay": 4.25}}))
    write_series(report, data)
    for p in data["points"]:
        (root / f"results/x/evaluate/{p}").mkdir(parents=True)
        (root / f"results/x/evaluate/{p}/bpb.json").write_text(json.dumps({"languages": data["bpb"][p]["languages"]}))
        (root / f"results/x/evaluate/{p}/benchmarks.json").write_text(json.dumps({"mmlu": {"accuracy": 30.0}}))
    doc = metrics_and_plots([G("evaluate", ["results/x/evaluate"], ["results/x/evaluate/base",
                                                                     "results/x/evaluate/replay",
                                                                     "results/x/evaluate/_idioms"]),
                             G("report", ["results/x/report"])])
    (root / "dvc.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    sh(["git", "init", "-q"], root)
    sh(["dvc", "init", "-q"], root)
    shown = json.loads(sh(["dvc", "metrics", "show", "--json"], root).stdout)
    got = shown[""]["data"]["results/x/report/report.json"]["data"]
    assert got["bpb"]["replay"]["zh"]["bits_per_byte"] == 1.75 and got["train_final_loss"]["replay"] == 4.25
    assert shown[""]["data"]["results/x/evaluate/base/bpb.json"]["data"]["languages"]["en"]["bits_per_byte"] == 4.5
    sh(["dvc", "plots", "show", "-o", str(tmp_path / "plots")], root)
    html = (tmp_path / "plots" / "index.html").read_text()
    assert "bits per byte at each evaluation point" in html and "training loss" in html


def _reflink_works(d: Path) -> bool:
    (d / "probe").write_bytes(b"x")
    ok = subprocess.run(["cp", "--reflink=always", d / "probe", d / "probe2"], capture_output=True).returncode == 0
    for f in ("probe", "probe2"):
        (d / f).unlink(missing_ok=True)
    return ok


def test_final_under_dvc_is_not_stored_twice(tmp_path):
    root = tmp_path / "repo"
    final = root / "results/x/train/replay/final"
    final.mkdir(parents=True)
    (final / "model.safetensors").write_bytes(os.urandom(2 << 20))
    (final / "config.json").write_text('{"model_type": "llama"}')
    sh(["git", "init", "-q"], root)
    sh(["dvc", "init", "-q"], root)
    sh(["dvc", "config", "cache.type", "reflink,hardlink,symlink"], root)  # the documented setting
    sh(["dvc", "add", "-q", "results/x/train/replay/final"], root)
    sh(["dvc", "checkout", "-q", "--relink"], root)  # `dvc add`/`dvc commit` copy into the cache; this links back
    cache_inodes = {(p.stat().st_dev, p.stat().st_ino) for p in (root / ".dvc/cache").rglob("*") if p.is_file()}
    for f in final.iterdir():
        st = f.stat()
        linked = f.is_symlink() or (st.st_dev, st.st_ino) in cache_inodes
        assert linked or _reflink_works(root), f"{f.name}: a second copy of the checkpoint in the workspace"
    # and after removing the workspace copy, checkout links it again instead of copying
    sh(["rm", "-rf", "results/x/train/replay/final"], root)
    sh(["dvc", "checkout", "-q"], root)
    st = (final / "model.safetensors").stat()
    assert (final / "model.safetensors").is_symlink() or (st.st_dev, st.st_ino) in cache_inodes or _reflink_works(root)
