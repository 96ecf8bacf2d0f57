"""The real trainer (cpt.train via cpt.launch.stage + cpt.launch.plan.stage_launcher) under a real local SLURM:
scancel mid-run -> the trainer checkpoints (or the last periodic checkpoint stands) -> the rerun resumes from it
and finishes; a rerun after success submits nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from fastpoll import SNAKEMAKE

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
TRAIN = {"init_from": "init", "plugin": "ddp", "precision": "fp32", "lr": 1e-3, "micro_batch_size": 4,
         "max_length": 32, "epochs": 80, "save_interval": 25, "tensorboard": False, "flash_attention": False,
         "warmup_steps": 2, "seed": 7}


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def _cmd() -> list[str]:
    return [*SNAKEMAKE, "--configfile", "config.yaml", "--retries", "0"]


def _squeue(env: dict, wd: Path) -> list[list[str]]:
    """[job id, comment] of this test's jobs (the cluster may be shared with other tests' workflows)."""
    out = subprocess.run(["squeue", "-h", "-o", "%i|%k|%Z"], capture_output=True, text=True, timeout=30,
                         env=env).stdout
    rows = [line.split("|") for line in out.splitlines() if line.strip()]
    return [[job, comment] for job, comment, workdir in rows if Path(workdir) == wd]


def test_real_trainer_cancelled_under_slurm_resumes_on_rerun(slurm_cluster, tmp_path):
    wd = tmp_path / "wf"
    wd.mkdir()
    shutil.copy(HERE / "train" / "Snakefile", wd / "Snakefile")
    (wd / "config.yaml").write_text(yaml.safe_dump({
        "train": TRAIN,
        "resources": {"default": {"mem_mb": 1500, "runtime": 15},
                      "train": {"nodes": 1, "nproc_per_node": 2, "cpus_per_task": 2, "mem_mb": 4000,
                                "signal_seconds": 60}},
        "launch": {"env": {"NCCL_DEBUG": "WARN"}},
    }))
    proc = subprocess.Popen(_cmd(), cwd=wd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    latest = wd / "out" / "train" / "checkpoints" / "latest"
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not latest.exists():
            time.sleep(0.5)
        assert latest.exists(), "no checkpoint was written"
        jobs = [j for j, comment in _squeue(slurm_cluster["env"], wd) if comment == "rule_train"]
        assert len(jobs) == 1, _squeue(slurm_cluster["env"], wd)
        subprocess.run(["scancel", jobs[0]], check=True, timeout=30, env=slurm_cluster["env"])
        out, _ = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0 and not (wd / "out" / "train" / "final").exists(), out[-3000:]
    ckpt = (wd / "out" / "train" / "checkpoints" / latest.read_text().strip())
    assert ckpt.is_dir()
    step = json.loads((ckpt / "state.json").read_text())["step"]

    r = subprocess.run(_cmd(), cwd=wd, env=_env(), capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    logs = sorted((wd / "logs" / "slurm" / "rule_train").glob("*.log"), key=lambda p: int(p.stem))
    assert len(logs) == 2
    first = logs[0].read_text()
    # scancel sends SIGTERM to every process of the step: the trainer finishes its step and checkpoints.
    # (Its exit code 75 reaches srun unless the signal lands right after a periodic save -- a cpt.launch.torchrun
    # issue reported to its owner -- so the code is not asserted here; the resume below is.)
    assert "preempted by signal" in first and f"(step {step}) saved" in first, first[-3000:]
    second = logs[-1].read_text()
    assert f"at step {step}" in second and "resumed from" in second, second[-3000:]
    assert "cpt.launch (slurm): srun" in second
    assert (wd / "out" / "train" / "final" / "config.json").is_file()
    metrics = [json.loads(line) for line in (wd / "out" / "train" / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["step"] > step

    again = subprocess.run(_cmd(), cwd=wd, env=_env(), capture_output=True, text=True, timeout=200)
    assert again.returncode == 0 and "has been submitted with SLURM jobid" not in again.stdout + again.stderr
