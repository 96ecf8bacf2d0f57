"""Node failures of a 2-node training job on the N-node test cluster (the real trainer through
`snakemake --profile profiles/slurm`, tests/slurm/train/Snakefile), each asserted exactly:

- a node lost mid-training (everything in its namespace SIGKILLed: slurmd, slurmstepd, torchrun, its ranks): the
  ranks left name the lost ranks and their node, SLURM ends the job (NODE_FAIL) and the retry's stage names it with
  the lost node (from the launch record in run.json), and Snakemake's
  retry (resources.train.min_nodes: one node fewer per retry) resumes from the last verified checkpoint on the
  node that is left -- an elastic resume from 4 to 2 ranks -- and finishes; its losses from the resume point
  equal, bit for bit, those of a local 2-rank run resumed from the same checkpoint;
- the node running the batch script lost (node1: the stage itself dies with it, so nothing reports the loss then):
  SLURM ends the job NODE_FAIL, Snakemake's retry runs on the node left and its stage names the lost attempt, its
  job state and the node (from the launch record left open in run.json), then resumes from the last verified
  checkpoint and finishes;
- a hung rank (SIGSTOP of one trainer process on the second node): the job ends within train.dist_timeout_s
  with a message naming that rank and its node, not at the job's time limit.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from mnrun import (heal, local_reference, metrics, node_script, snakemake_cmd, snakemake_env, train_logs, wait_for,
                   workflow)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def _steps(stage: Path) -> int:
    f = stage / "metrics.jsonl"
    return f.read_text().count("\n") if f.is_file() else 0


def _verified(stage: Path) -> list[str]:
    d = stage / "checkpoints"
    return sorted(p.name for p in d.glob("step-*") if (p / "manifest.json").is_file()) if d.is_dir() else []


def _ranks_on(cluster: dict, node: str) -> dict[int, int]:
    """{rank: pid} of the trainer processes (torchrun's workers) running on `node`."""
    pids = subprocess.run(["ip", "netns", "pids", f"cptmn-{node}"], capture_output=True, text=True,
                          timeout=30).stdout.split()
    ranks = {}
    for pid in pids:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            env = dict(v.split(b"=", 1) for v in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if b"=" in v)
        except OSError:
            continue
        if b"cpt.train" in cmd and b"torch.distributed.run" not in cmd and b"RANK" in env:
            ranks[int(env[b"RANK"])] = int(pid)
    return ranks


def test_a_lost_node_ends_the_job_naming_it_and_the_retry_resumes_on_the_node_left(slurm_multinode, tmp_path):
    epochs, total = 4, 32  # 8 steps of a global batch of 16 per epoch
    train = {"epochs": epochs, "save_interval": 4, "keep_last": 100}
    wd = workflow(tmp_path, "lost", {"nodes": 2, "min_nodes": 1, "nproc_per_node": 2}, train)
    stage = wd / "out" / "train"
    started = time.monotonic()
    proc = subprocess.Popen(snakemake_cmd("--retries", "1"), cwd=wd, env=snakemake_env(slurm_multinode),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: _steps(stage) >= 10 and _verified(stage), 600, "10 steps and a checkpoint", proc)
        node_script(slurm_multinode, "kill", "node2")  # slurmd, slurmstepd, torchrun and ranks 2, 3: SIGKILL
        out, _ = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        heal(slurm_multinode, "node2")  # the cluster is shared by the session's tests
    print(f"node-loss test: {time.monotonic() - started:.0f} s")
    assert proc.returncode == 0, out[-6000:]

    first, second = train_logs(wd)  # the job that lost node2, and the retry
    # the ranks left name the lost ranks and their node (a collective lost its connection) ...
    assert re.search(r"ranks 2, 3 on node2 \(pids \d+, \d+\) are not running", first), first[-5000:]
    # ... SLURM sets the node DOWN (SlurmdTimeout) and ends the job (NODE_FAIL, no --no-kill); srun returns at that
    # moment, so the stage's own error may or may not make it to the log -- the retry's stage names the job, its
    # state and the node from the launch record in run.json, whichever happened
    node = r"node node2 \(State=\S*DOWN\S*, Reason=[^)]*\) of SLURM job (\d+) failed"
    named = re.search(r"out/train: the previous attempt \(SLURM job (\d+) on node1, node2\) ended [^:]*: SLURM "
                      rf"JobState=NODE_FAIL; {node}; resuming from the latest verified checkpoint", second)
    assert named and named.group(1) == named.group(2), second[-5000:]
    assert "srun --nodes=2 --ntasks=2" in first and "--nnodes=2" in first
    assert "srun --nodes=1 --ntasks=1" in second and "--nnodes=1" in second and "--nproc_per_node=2" in second
    resumed = re.search(r"resumed from \S*(step-(\d+)) at step (\d+) of 32", second)
    assert resumed, second[-5000:]
    name, step = resumed.group(1), int(resumed.group(2))
    assert 8 <= step < total and step % 4 == 0  # the newest verified checkpoint before the loss (10+ steps done)
    assert "elastic resume: the checkpoint was written by 4 processes" in second  # 4 -> 2 ranks
    a = metrics(stage)
    assert [m["step"] for m in a] == list(range(1, total + 1))

    # the reference: the same checkpoint resumed by a local 2-rank run (torchrun --standalone), uninterrupted
    ref = tmp_path / "ref"
    shutil.copytree(stage / "checkpoints" / name, ref / "checkpoints" / name)
    shutil.copy(stage / "run.json", ref / "run.json")  # same key: the checkpoint is resumed, not set aside
    log = local_reference(wd, ref, nproc=2, train=train, relative=True)
    assert f"{name} at step {step} of {total}" in log  # resumed, not set aside as stale
    b = metrics(ref)
    assert [m["step"] for m in b] == list(range(step + 1, total + 1))
    assert [(m["loss"], m["tokens"]) for m in a[step:]] == [(m["loss"], m["tokens"]) for m in b]  # bit for bit
    wa, wb = _weights(stage), _weights(ref)
    assert wa.keys() == wb.keys() and all(wa[k].equal(wb[k]) for k in wa)


def test_losing_the_batch_node_is_named_by_the_retry_which_resumes_on_the_node_left(slurm_multinode, tmp_path):
    total = 32
    train = {"epochs": 4, "save_interval": 4, "keep_last": 100}
    wd = workflow(tmp_path, "batchnode", {"nodes": 2, "min_nodes": 1, "nproc_per_node": 2}, train)
    stage = wd / "out" / "train"
    proc = subprocess.Popen(snakemake_cmd("--retries", "1"), cwd=wd, env=snakemake_env(slurm_multinode),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: _steps(stage) >= 10 and _verified(stage), 600, "10 steps and a checkpoint", proc)
        node_script(slurm_multinode, "kill", "node1")  # the batch script, the stage, srun, rank 0's store: SIGKILL
        out, _ = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        heal(slurm_multinode, "node1")
    assert proc.returncode == 0, out[-6000:]
    logs = sorted((wd / "logs" / "slurm" / "rule_train").glob("*.log"), key=lambda p: int(p.stem))
    assert len(logs) == 2, logs
    job = logs[0].stem
    first, second = (p.read_text() for p in logs)
    assert "during training" not in first  # the stage died with its node: no word from it
    assert "NODE_FAIL" in out  # Snakemake's SLURM executor saw the job end so
    assert re.search(rf"out/train: the previous attempt \(SLURM job {job} on node1, node2\) ended without its launch "
                     rf"returning: SLURM JobState=NODE_FAIL; node node1 \(State=\S*DOWN\S*, Reason=[^)]*\) of SLURM "
                     rf"job {job} failed; resuming from the latest verified checkpoint", second), second[-5000:]
    assert "srun --nodes=1 --ntasks=1" in second and "Host: node2" in second
    resumed = re.search(r"resumed from \S*step-(\d+) at step (\d+) of 32", second)
    assert resumed and 8 <= int(resumed.group(1)) < total and int(resumed.group(1)) % 4 == 0, second[-5000:]
    assert [m["step"] for m in metrics(stage)] == list(range(1, total + 1))
    assert json.loads((stage / "run.json").read_text())["launch"]["exit_code"] == 0


def _weights(stage: Path) -> dict:
    from safetensors.torch import load_file

    files = sorted((stage / "final").glob("*.safetensors"))
    assert files
    return {k: v for f in files for k, v in load_file(f).items()}


def test_a_hung_rank_ends_the_job_within_dist_timeout_naming_rank_and_node(slurm_multinode, tmp_path):
    timeout_s = 10
    wd = workflow(tmp_path, "hung", {"nodes": 2, "nproc_per_node": 2, "runtime": 15},
                  {"epochs": 100, "dist_timeout_s": timeout_s})
    stage = wd / "out" / "train"
    proc = subprocess.Popen(snakemake_cmd("--retries", "0"), cwd=wd, env=snakemake_env(slurm_multinode),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    pid = None
    try:
        wait_for(lambda: _steps(stage) >= 5, 600, "5 training steps", proc)
        ranks = _ranks_on(slurm_multinode, "node2")
        assert sorted(ranks) == [2, 3], ranks  # node_rank 1 runs ranks 2 and 3
        pid = ranks[3]
        os.kill(pid, signal.SIGSTOP)  # rank 3 hangs: the other ranks block in the next collective
        stopped = time.monotonic()
        out, _ = proc.communicate(timeout=400)
        ended = time.monotonic() - stopped
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)  # SLURM has killed it already; never leave a stopped process
            except ProcessLookupError:
                pass
    print(f"hung rank: job ended {ended:.0f} s after the SIGSTOP")
    assert proc.returncode != 0
    (log,) = train_logs(wd)
    assert (f"a collective operation did not complete within train.dist_timeout_s = {timeout_s} s" in log), \
        log[-5000:]
    assert f"rank 3 on node2 (pid {pid}) is not running: no heartbeat" in log, log[-5000:]
    # bounded by the timeout (+ the 3 s heartbeat check, srun's clean-up and Snakemake's polling), far from the
    # job's 15-minute limit
    assert ended < timeout_s + 90, ended
