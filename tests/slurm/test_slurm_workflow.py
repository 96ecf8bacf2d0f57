"""The project's tiny experiment through `snakemake --profile profiles/slurm` on a real local SLURM: every job is
a SLURM job (seen by squeue), the outputs of every stage appear, and a rerun after success submits nothing.
(Training cancelled mid-run and resumed: test_slurm_train.py, with the same trainer and launcher.)"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml
from fastpoll import SNAKEMAKE

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "tests" / "workflow" / "tiny.yaml"
pytestmark = [pytest.mark.slurm, pytest.mark.slow,
              pytest.mark.skipif(not TINY.exists(), reason="tests/workflow/tiny.yaml is not there yet")]
FAST = ["--retries", "0"]


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def _run(wd: Path, config: Path) -> subprocess.CompletedProcess:
    cmd = [*SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(wd), "--configfile", str(config),
           *FAST]
    return subprocess.run(cmd, cwd=wd, env=_env(), capture_output=True, text=True, timeout=3000)


def test_tiny_experiment_runs_through_the_slurm_profile(slurm_cluster, tmp_path):
    cfg = yaml.safe_load(TINY.read_text(encoding="utf-8"))
    wd = tmp_path / "wf"
    wd.mkdir()
    shutil.copytree(REPO / "config", wd / "config")
    config = wd / "tiny.yaml"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True), encoding="utf-8")

    seen: set[str] = set()
    done = threading.Event()

    def watch():
        while not done.is_set():
            out = subprocess.run(["squeue", "-h", "-o", "%k"], capture_output=True, text=True,
                                 env=slurm_cluster["env"]).stdout
            seen.update(line.strip() for line in out.splitlines() if line.strip())
            time.sleep(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        r = _run(wd, config)
    finally:
        done.set()
        watcher.join()
    assert r.returncode == 0, r.stdout[-5000:] + r.stderr[-5000:]
    submitted = (r.stdout + r.stderr).count("has been submitted with SLURM jobid")
    assert submitted >= 5 and any(c.startswith("rule_train") for c in seen), (submitted, seen)
    root = wd / "results" / cfg["experiment"]
    for stage in cfg["train"]["stages"]:
        assert (root / "train" / stage / "final" / "config.json").is_file()
    logs = list((wd / "logs" / "slurm").rglob("*.log"))
    assert len(logs) == submitted  # one kept log per SLURM job

    again = _run(wd, config)
    assert again.returncode == 0
    assert "has been submitted with SLURM jobid" not in again.stdout + again.stderr
    assert "Nothing to be done" in again.stdout + again.stderr
