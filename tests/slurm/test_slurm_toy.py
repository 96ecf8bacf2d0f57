"""The SLURM profile + cpt.launch.plan against a real local SLURM, on a 2-rule workflow (tests/slurm/toy).

- the workflow runs through `snakemake --profile profiles/slurm`; its jobs are visible to squeue;
  a rerun after success submits nothing
- (scancel mid-run -> checkpoint -> rerun resumes: test_slurm_train.py, with the project's real trainer)
- a training job that nears its time limit gets SIGUSR1 first (--signal=USR1@...), checkpoints and exits 75; the
  rerun (or the profile's `retries`) resumes from that checkpoint
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from fastpoll import SNAKEMAKE

from cpt.launch.plan import expand_nodelist

pytestmark = [pytest.mark.slurm]

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def _workdir(tmp_path: Path, steps: int, step_seconds: float, train: dict | None = None) -> Path:
    wd = tmp_path / "wf"
    wd.mkdir(exist_ok=True)
    shutil.copy(HERE / "toy" / "Snakefile", wd / "Snakefile")
    config = {
        "python": sys.executable,
        "trainer": str(HERE / "toy_trainer.py"),
        "steps": steps,
        "step_seconds": step_seconds,
        "resources": {
            "default": {"mem_mb": 300, "runtime": 10, "cpus_per_task": 1},
            "train": {"nodes": 1, "nproc_per_node": 2, "cpus_per_task": 2, "mem_mb": 1500, "runtime": 10,
                      **(train or {})},
        },
    }
    (wd / "config.yaml").write_text(yaml.safe_dump(config))
    return wd


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def _snakemake(wd: Path, *extra: str, timeout: int = 240) -> subprocess.CompletedProcess:
    cmd = [*SNAKEMAKE, "--configfile", "config.yaml", *extra]
    return subprocess.run(cmd, cwd=wd, env=_env(), capture_output=True, text=True, timeout=timeout)


def _squeue(env: dict) -> list[tuple[str, str, str]]:
    out = subprocess.run(["squeue", "-h", "-o", "%i|%k|%T"], capture_output=True, text=True, timeout=30,
                         env=env).stdout
    return [tuple(line.split("|")) for line in out.splitlines() if line.strip()]


def _submitted(result: subprocess.CompletedProcess) -> int:
    return (result.stdout + result.stderr).count("has been submitted with SLURM jobid")


def test_nodelist_expansion_agrees_with_scontrol(slurm_cluster):
    for nodelist in ("localhost", "gpu[01-03,7],cpu1", "n[008-010]", "a[1-2]b[3-4]"):
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True,
                             check=True, timeout=30, env=slurm_cluster["env"]).stdout.split()
        assert expand_nodelist(nodelist) == out


def test_workflow_runs_through_slurm_profile_and_rerun_submits_nothing(slurm_cluster, tmp_path):
    wd = _workdir(tmp_path, steps=6, step_seconds=0.2)
    seen: set[tuple[str, str]] = set()
    done = threading.Event()

    def watch():
        while not done.is_set():
            seen.update((job_id, comment) for job_id, comment, _ in _squeue(slurm_cluster["env"]))
            time.sleep(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        r = _snakemake(wd)
    finally:
        done.set()
        watcher.join()
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert _submitted(r) == 2
    comments = {comment for _, comment in seen}
    assert {"rule_prepare", "rule_train"} <= comments, f"squeue saw {seen}"

    final = json.loads((wd / "out" / "final" / "final.json").read_text())
    assert final["world_size"] == 2 and final["resumed_from"] == 0 and final["slurm_job_id"]
    assert (wd / "out" / "data.txt").read_text().strip().split("=")[1].isdigit()  # ran as a SLURM job
    train_logs = list((wd / "logs" / "slurm" / "rule_train").glob("*.log"))
    assert [p.stem for p in train_logs] == [final["slurm_job_id"]]  # one log per job, kept after success
    assert "cpt.launch (slurm): srun" in train_logs[0].read_text()

    again = _snakemake(wd)
    assert again.returncode == 0, again.stderr[-2000:]
    assert _submitted(again) == 0 and "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.slow
def test_time_limit_signal_reaches_trainer_which_checkpoints_and_rerun_resumes(slurm_cluster, tmp_path):
    # runtime 1 minute and SIGUSR1 55 s before it: SLURM signals the training step within seconds (its timer
    # resolution is coarse), long before the limit; the trainer checkpoints and exits 75.
    wd = _workdir(tmp_path, steps=100000, step_seconds=0.25, train={"runtime": 1, "signal_seconds": 55})
    r = _snakemake(wd, "--retries", "0", timeout=300)
    assert r.returncode != 0
    log = next((wd / "logs" / "slurm" / "rule_train").glob("*.log")).read_text()
    assert "--signal=USR1@55" in r.stdout + r.stderr  # the sbatch request (slurm_extra)
    assert "toy-trainer: signal received" in log and "exiting 75" in log, log[-3000:]
    assert "DUE TO TIME LIMIT" not in log  # it stopped on the warning signal, not by being killed
    stopped = json.loads((wd / "out" / "ckpt" / "state.json").read_text())["step"]
    assert stopped > 0

    r = _snakemake(wd, "--config", f"steps={stopped + 3}")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    final = json.loads((wd / "out" / "final" / "final.json").read_text())
    assert final["resumed_from"] == stopped and final["steps"] == stopped + 3
