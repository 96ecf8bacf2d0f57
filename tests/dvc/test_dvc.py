"""DVC over the Snakemake workflow: dvc.yaml is current and agrees with the Snakefile; the committed .dvc/ setup;
a fresh clone's `dvc pull` gives the artifacts and a Snakemake that has nothing to do.

dvc.yaml is generated from the Snakemake DAG (python -m cpt.workflow.dvc); these tests fail when it is stale or
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

from cpt.workflow.dvc import render, snakemake_outputs

pytestmark = [pytest.mark.dvc]
REPO = Path(__file__).resolve().parents[2]
CONFIG = "config/config.yaml"


def sh(cmd: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env["DVC_NO_ANALYTICS"] = "1"
    env["PYTHONPATH"] = str(cwd / "src") if (cwd / "src" / "cpt").is_dir() else str(REPO / "src")
    env.setdefault("OMP_NUM_THREADS", "1")
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
        "dvc.yaml is stale: regenerate with `python -m cpt.workflow.dvc --config config/config.yaml --out dvc.yaml`")


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


def test_committed_dvc_setup_has_the_documented_default_remote():
    cfg = (REPO / ".dvc" / "config").read_text(encoding="utf-8")
    assert "remote = store" in cfg and "url = ../../cpt-dvc-store" in cfg  # docs/hpc.md: a sibling of the clone
    assert "analytics = false" in cfg and "check_update = false" in cfg  # no network at run time
    ignored = (REPO / ".dvcignore").read_text(encoding="utf-8")
    assert "__pycache__/" in ignored  # bytecode must not change the hash of the src/ dependencies
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert "src/cpt/train" in stages["train-base"]["deps"] and "src/cpt/tokenizer" in stages["tokenizer"]["deps"]
    assert "src/cpt/train" not in stages["tokenizer"]["deps"]  # a change to the trainer reruns training only
    assert "src/cpt/core/config.py" in stages["train-base"]["deps"]  # shared layers: module by module


def _mini_dvc_repo(root: Path) -> Path:
    """Two DVC stages whose outs look like Snakemake directory outputs (with .snakemake_timestamp)."""
    root.mkdir()
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {
        "a": {"cmd": "mkdir -p out_a && touch out_a/.snakemake_timestamp && echo a > out_a/f", "outs": ["out_a"]},
        "b": {"cmd": "mkdir -p out_b && touch out_b/.snakemake_timestamp && cat out_a/f > out_b/f",
              "deps": ["out_a"], "outs": ["out_b"]}}}))
    sh(["git", "init", "-q"], root)
    sh(["dvc", "init", "-q"], root)
    sh(["dvc", "repro", "-q"], root)
    return root


def test_times_of_dvc_restored_outputs_are_aligned_once(tmp_path):
    from cpt.workflow.dvc import MARKER, align_checkout_mtimes

    root = _mini_dvc_repo(tmp_path / "r")
    a, b = root / "out_a" / ".snakemake_timestamp", root / "out_b" / ".snakemake_timestamp"
    os.utime(b, (1_000_000, 1_000_000))  # as a checkout may leave them: the input newer than the output
    os.utime(a, (2_000_000, 2_000_000))
    (root / ".snakemake" / "metadata").mkdir(parents=True)  # empty: Snakemake never ran here
    assert sorted(align_checkout_mtimes(root)) == ["out_a", "out_b"]
    assert a.stat().st_mtime == b.stat().st_mtime > 2_000_000
    assert (root / MARKER).is_file()
    os.utime(a, (3_000_000, 3_000_000))
    assert align_checkout_mtimes(root) == []  # once per dvc.lock
    (root / MARKER).unlink()
    (root / ".snakemake" / "metadata" / "x").write_text("{}")
    assert align_checkout_mtimes(root) == []  # Snakemake made outputs here: its times are real
    (root / "out_b" / "f").write_text("edited\n")  # DVC sees stage b changed: its times stay
    os.utime(b, (1_000_000, 1_000_000))
    assert align_checkout_mtimes(root, force=True) == ["out_a"]
    assert b.stat().st_mtime == 1_000_000


@pytest.mark.slow
def test_fresh_clone_dvc_pull_then_snakemake_has_nothing_to_do(project_copy, tmp_path):
    """Run the tiny workflow, `dvc commit`, push to the default remote (a local directory next to the clone), clone
    afresh, `dvc pull`: the artifacts are identical, `snakemake -n` plans nothing, and a changed param makes
    `dvc repro` run exactly its stage through Snakemake."""
    repo = project_copy
    assert (repo / ".dvc" / "config").is_file()  # committed: no `dvc init` in a fresh clone
    shutil.copy(REPO / "tests" / "workflow" / "tiny.yaml", repo / "config" / "tiny.yaml")
    (repo / "dvc.yaml").write_text(render("config/tiny.yaml", workdir=repo), encoding="utf-8")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    sh([*git, "add", "-A"], repo)
    sh([*git, "commit", "-qm", "project"], repo)
    snake = [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "config/tiny.yaml"]
    sh(snake, repo, timeout=3600)
    sh(["dvc", "commit", "-f", "-q"], repo)
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    assert set(lock["stages"]) == set(stages)
    for name, st in lock["stages"].items():
        assert st["outs"] and all(o.get("md5") for o in st["outs"]), f"{name}: outs not hashed in dvc.lock"
    deps = {d["path"]: d for d in lock["stages"]["train-base"]["deps"]}
    assert deps["src/cpt/train"]["md5"].endswith(".dir")  # library code is a dependency
    assert {d["path"]: d for d in lock["stages"]["corpus"]["deps"]}["data/downloads"]["md5"].endswith(".dir")
    sh([*git, "add", "dvc.lock"], repo)
    sh([*git, "commit", "-qm", "results"], repo)
    sh(["dvc", "push", "-q"], repo)
    assert (tmp_path / "cpt-dvc-store" / "files" / "md5").is_dir()  # the documented default remote layout
    tracked = [o for st in stages.values() for o in st["outs"]]  # checkpoints/, metrics, logs are not versioned

    def versioned(root: Path) -> dict[str, str]:
        hashes = {}
        for out in tracked:
            p = root / out
            hashes.update({out: hashlib.sha256(p.read_bytes()).hexdigest()} if p.is_file() else
                          {f"{out}/{k}": v for k, v in _tree_hashes(p).items()})
        return hashes

    before = versioned(repo)
    assert any("/train/" in k and "/final/" in k for k in before) and any("/dataset/" in k for k in before)
    clone = tmp_path / "clone"
    sh(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    (clone / "data" / "downloads").symlink_to((REPO / "data" / "downloads").resolve())  # what install.sh fetches
    sh(["dvc", "pull", "-q"], clone)
    assert versioned(clone) == before
    dry = sh([*snake, "-n"], clone)
    assert "Nothing to be done" in dry.stdout + dry.stderr, (dry.stdout + dry.stderr)[-4000:]
    assert "up to date" in sh(["dvc", "status"], clone).stdout
    again = sh([*snake, "-n"], clone)
    assert "Nothing to be done" in again.stdout + again.stderr
    cfg = yaml.safe_load((clone / "config" / "tiny.yaml").read_text())
    cfg["report"] = {"enabled": True}
    (clone / "config" / "tiny.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
    repro = sh(["dvc", "repro"], clone, timeout=1800).stdout
    assert "Running stage 'report'" in repro, repro[-3000:]
    assert repro.count("Running stage") == 1, repro[-3000:]  # nothing else reruns
    assert (clone / "results" / "tiny" / "report" / "summary.md").is_file()
