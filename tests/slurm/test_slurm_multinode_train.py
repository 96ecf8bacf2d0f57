"""The project's real trainer (tests/slurm/train/Snakefile: cpt.launch.stage + stage_launcher, as the workflow's
train rule) through `snakemake --profile profiles/slurm` on the N-node test cluster: 2 nodes x 2 ranks trains
exactly as 1 node x 4 ranks (same world size, same ranks, gloo); a rerun after success submits nothing.

The 1 x 4 reference runs the same stage code (cpt.launch.stage.run_stage) with a local torchrun on the same
inputs: a second SLURM round trip would add a minute of Snakemake status polling to CI and test nothing more."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
FAST = ["--latency-wait", "5", "--slurm-init-seconds-before-status-checks", "1"]
TRAIN = {"init_from": "init", "plugin": "ddp", "precision": "fp32", "lr": 1e-3, "micro_batch_size": 4,
         "max_length": 32, "epochs": 2, "save_interval": 1000, "tensorboard": False, "flash_attention": False,
         "warmup_steps": 2, "seed": 7}


def workflow(tmp_path: Path, name: str, train_resources: dict, train: dict | None = None) -> Path:
    wd = tmp_path / name
    wd.mkdir()
    shutil.copy(HERE / "train" / "Snakefile", wd / "Snakefile")
    (wd / "config.yaml").write_text(yaml.safe_dump({
        "train": {**TRAIN, **(train or {})},
        "resources": {"default": {"mem_mb": 1000, "runtime": 15},
                      "train": {"cpus_per_task": 2, "mem_mb": 3000, **train_resources}},
    }))
    return wd


def snakemake(cluster: dict, wd: Path, *extra: str, timeout: int = 400) -> subprocess.CompletedProcess:
    env = dict(cluster["env"])
    env["PYTHONPATH"] = str(REPO / "src")
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "snakemake", "--profile", str(REPO / "profiles" / "slurm"), "--configfile",
           "config.yaml", *FAST, *extra]
    return subprocess.run(cmd, cwd=wd, env=env, capture_output=True, text=True, timeout=timeout)


def metrics(stage: Path) -> list[dict]:
    return [json.loads(line) for line in (stage / "metrics.jsonl").read_text().splitlines()]


def local_reference(wd: Path, out: Path, nproc: int) -> None:
    """The stage on one node with `nproc` ranks (torchrun --standalone), on the workflow's inputs."""
    code = ("import json, sys; from cpt.launch.stage import run_stage; "
            "run_stage(json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], nproc=int(sys.argv[5]))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", code, json.dumps(TRAIN), str(wd / "out" / "model"),
                        str(wd / "out" / "data"), str(out), str(nproc)], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


def train_logs(wd: Path) -> list[str]:
    logs = sorted((wd / "logs" / "slurm" / "rule_train").glob("*.log"), key=lambda p: int(p.stem))
    return [p.read_text() for p in logs]


def test_two_nodes_of_two_ranks_train_exactly_as_one_node_of_four(slurm_multinode, tmp_path):
    two = workflow(tmp_path, "2x2", {"nodes": 2, "nproc_per_node": 2})
    r = snakemake(slurm_multinode, two, "--retries", "0")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    log = train_logs(two)[-1]
    assert "srun --nodes=2 --ntasks=2" in log and "--nnodes=2" in log and "--nproc_per_node=2" in log
    assert "--rdzv_endpoint=node1:" in log and "Host: node1" in log
    local_reference(two, tmp_path / "1x4", nproc=4)

    a, b = metrics(two / "out" / "train"), metrics(tmp_path / "1x4")
    assert len(a) == len(b) == 16  # 128 sequences / (4 ranks x micro batch 4) x 2 epochs
    assert [m["step"] for m in a] == [m["step"] for m in b]
    assert [m["tokens"] for m in a] == [m["tokens"] for m in b]
    assert max(abs(x["loss"] - y["loss"]) for x, y in zip(a, b)) <= 1e-5

    again = snakemake(slurm_multinode, two, "--retries", "0", timeout=200)
    assert again.returncode == 0 and "has been submitted with SLURM jobid" not in again.stdout + again.stderr
    assert "Nothing to be done" in again.stdout + again.stderr
