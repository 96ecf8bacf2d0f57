"""DVC over the Snakemake workflow: dvc.yaml is current and agrees with the Snakefile; repro, push, wipe, pull.

dvc.yaml is generated from the Snakemake DAG (python -m cpt.dvcstages); these tests fail when it is stale or
when the Snakefile produces an artifact no DVC stage versions (or a DVC stage names a path Snakemake never makes).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cpt.dvcstages import render, snakemake_outputs

pytestmark = [pytest.mark.dvc]
REPO = Path(__file__).resolve().parents[2]
CONFIG = "config/config.yaml"


def sh(cmd: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env["DVC_NO_ANALYTICS"] = "1"
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # this venv's snakemake
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(cmd)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def _under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def _tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_dvc_yaml_is_generated_from_the_current_workflow():
    committed = (REPO / "dvc.yaml").read_text(encoding="utf-8")
    assert committed == render(CONFIG), (
        "dvc.yaml is stale: regenerate with `python -m cpt.dvcstages --config config/config.yaml --out dvc.yaml`")


def test_dvc_yaml_and_snakefile_agree_about_artifact_paths():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    rows = snakemake_outputs(CONFIG, with_status=True)  # from `snakemake --summary`
    outputs = {path: rule for path, rule, status in rows if "temp" not in status}
    temp_rules = {rule for _, rule, status in rows if "temp" in status}
    outs = {o: name for name, st in stages.items() for o in st["outs"]}
    # every artifact Snakemake makes is versioned by exactly one DVC stage (temp() intermediates: none)
    for path, rule in outputs.items():
        owners = [o for o in outs if _under(path, o)]
        assert len(owners) == 1, f"{path} (rule {rule}) is under DVC outs {owners}"
    allowed_anywhere = {r for st in stages.values() for r in
                        st["cmd"].split()[st["cmd"].split().index("--allowed-rules") + 1:st["cmd"].split().index("--")]}
    assert temp_rules <= allowed_anywhere, f"rules of temp outputs run by no DVC stage: {temp_rules - allowed_anywhere}"
    for name, st in stages.items():
        # every DVC out holds something Snakemake makes
        for o in st["outs"]:
            assert any(_under(p, o) for p in outputs), f"stage {name}: out {o} is no Snakemake output"
        cmd = st["cmd"].split()
        assert cmd[0] == "snakemake" and "--configfile" in cmd, f"stage {name}: cmd is not a snakemake call"
        targets = cmd[cmd.index("--") + 1:]
        allowed = cmd[cmd.index("--allowed-rules") + 1:cmd.index("--")]
        for t in targets:
            assert t in outputs, f"stage {name}: target {t} is no Snakemake output"
            assert outputs[t] in allowed, f"stage {name}: rule {outputs[t]} of {t} is not allowed"
            assert any(_under(t, o) for o in st["outs"]), f"stage {name}: target {t} outside its outs"
        # deps on results/ are outs of earlier stages (so DVC orders the stages like Snakemake does)
        for d in st["deps"]:
            if d.startswith("results/"):
                assert any(_under(d, o) for o in outs), f"stage {name}: dep {d} is made by no DVC stage"


@pytest.mark.slow
def test_repro_push_wipe_pull_gives_identical_artifacts(project_copy, tmp_path):
    """The tiny experiment (tests/workflow/tiny.yaml) with its own generated dvc.yaml, in a fresh copy."""
    repo = project_copy
    tiny = REPO / "tests" / "workflow" / "tiny.yaml"
    if not tiny.exists():
        pytest.skip("tests/workflow/tiny.yaml is not there yet")
    shutil.copy(tiny, repo / "config" / "tiny.yaml")
    (repo / "dvc.yaml").write_text(render("config/tiny.yaml", workdir=repo), encoding="utf-8")
    sh(["dvc", "init", "-q"], repo)
    remote = tmp_path / "remote"
    sh(["dvc", "remote", "add", "-d", "store", str(remote)], repo)

    sh(["dvc", "repro"], repo, timeout=1800)
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    assert set(lock["stages"]) == set(stages)
    for name, st in lock["stages"].items():
        assert st["outs"] and all(o.get("md5") for o in st["outs"]), f"{name}: outs not hashed in dvc.lock"
    raw = {d["path"]: d for d in lock["stages"]["corpus"]["deps"]}
    assert raw["data/downloads"]["md5"].endswith(".dir")  # the raw data archives are pinned

    results = repo / "results"
    tracked = [o for st in stages.values() for o in st["outs"]]  # checkpoints/, metrics, logs are not versioned

    def versioned() -> dict[str, str]:
        hashes = {}
        for out in tracked:
            p = repo / out
            hashes.update({out: hashlib.sha256(p.read_bytes()).hexdigest()} if p.is_file() else
                          {f"{out}/{k}": v for k, v in _tree_hashes(p).items()})
        return hashes

    before = versioned()
    assert any("/train/" in k and "/final/" in k for k in before) and any("/dataset/" in k for k in before)
    sh(["dvc", "push"], repo)
    shutil.rmtree(results)
    shutil.rmtree(repo / ".dvc" / "cache")
    sh(["dvc", "pull"], repo)
    assert versioned() == before
    status = sh(["dvc", "status"], repo).stdout
    assert "up to date" in status, status
    again = sh(["dvc", "repro"], repo).stdout
    assert "didn't change, skipping" in again and "Running stage" not in again
