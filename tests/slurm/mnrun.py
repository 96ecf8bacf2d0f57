"""Helpers of the multi-node trainer test (test_slurm_multinode_train.py): the real
trainer's one-rule workflow (tests/slurm/train/Snakefile) in a temporary directory, run through the SLURM profile
on the N-node test cluster, and the same stage run locally as the reference."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from fastpoll import SNAKEMAKE

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
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


def snakemake_cmd(*extra: str) -> list[str]:
    return [*SNAKEMAKE, "--configfile", "config.yaml", *extra]


def snakemake_env(cluster: dict) -> dict:
    env = dict(cluster["env"])
    env["PYTHONPATH"] = str(REPO / "src")
    env["OMP_NUM_THREADS"] = "1"
    return env


def snakemake(cluster: dict, wd: Path, *extra: str, timeout: int = 400) -> subprocess.CompletedProcess:
    return subprocess.run(snakemake_cmd(*extra), cwd=wd, env=snakemake_env(cluster), capture_output=True, text=True,
                          timeout=timeout)


def metrics(stage: Path) -> list[dict]:
    return [json.loads(line) for line in (stage / "metrics.jsonl").read_text().splitlines()]


def local_reference(wd: Path, out: Path, nproc: int, train: dict | None = None, relative: bool = False) -> str:
    """The stage on one node with `nproc` ranks (torchrun --standalone), on the workflow's inputs; its stderr.
    `relative`: run in `wd` with the inputs named as the workflow names them (out/model, out/data), so a copy of
    the workflow's run.json keeps its key and its checkpoints are resumed, not set aside."""
    code = ("import json, sys; from cpt.launch.stage import run_stage; "
            "run_stage(json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], nproc=int(sys.argv[5]))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="1")
    inputs = ["out/model", "out/data"] if relative else [str(wd / "out" / "model"), str(wd / "out" / "data")]
    r = subprocess.run([sys.executable, "-c", code, json.dumps({**TRAIN, **(train or {})}), *inputs, str(out),
                        str(nproc)], env=env, capture_output=True, text=True, timeout=300, cwd=wd)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r.stderr


def node_script(cluster: dict, action: str, node: str) -> None:
    """tests/slurm/multinode-node.sh: `kill` a node (everything in its namespace) or `start` its slurmd again."""
    env = {**os.environ, "SLURM_MN_BASE": str(cluster["base"])}
    r = subprocess.run(["bash", str(HERE / "multinode-node.sh"), action, node], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def node_states(cluster: dict) -> dict[str, str]:
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %T"], capture_output=True, text=True, timeout=30,
                         env=cluster["env"]).stdout
    return dict(line.split() for line in out.splitlines() if line.strip())


def heal(cluster: dict, node: str, timeout: float = 60) -> None:
    """Bring a lost node back for the tests that follow (the cluster is shared by the session): slurmd again,
    state RESUME, until every node is idle."""
    import time

    node_script(cluster, "start", node)
    deadline = time.time() + timeout
    while time.time() < deadline:
        states = node_states(cluster)
        if set(states.values()) == {"idle"}:
            return
        if "down" in states.get(node, "") or "drain" in states.get(node, ""):
            subprocess.run(["scontrol", "update", f"nodename={node}", "state=resume"], capture_output=True,
                           timeout=30, env=cluster["env"])
        time.sleep(0.5)
    raise AssertionError(f"{node} did not come back: {node_states(cluster)}")


def train_logs(wd: Path) -> list[str]:
    logs = sorted((wd / "logs" / "slurm" / "rule_train").glob("*.log"), key=lambda p: int(p.stem))
    return [p.read_text() for p in logs]


def squeue(cluster: dict) -> list[list[str]]:
    """[job id, comment (rule_<rule>), state, node list] of every job in the queue."""
    out = subprocess.run(["squeue", "-h", "-o", "%i|%k|%T|%N"], capture_output=True, text=True, timeout=30,
                         env=cluster["env"]).stdout
    return [line.split("|") for line in out.splitlines() if line.strip()]


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    import time

    deadline = time.time() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"snakemake ended ({proc.returncode}) while waiting for {what}:\n"
                                 f"{proc.stdout.read()[-4000:]}")
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
