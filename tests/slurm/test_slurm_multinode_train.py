"""The project's real trainer (tests/slurm/train/Snakefile: cpt.launch.stage + stage_launcher, as the workflow's
train rule) through `snakemake --profile profiles/slurm` on the N-node test cluster, 2 nodes x 2 ranks, stopped
once by the time-limit / preemption signal; one test, because every SLURM job and reference run costs CI a minute
of process start-up on two cores:

- 2 nodes x 2 ranks train exactly as 1 node x 4 ranks (gloo, fp32): same steps, token counts and losses, bit for
  bit up to the preemption; the reference is the same stage code (cpt.launch.stage.run_stage) under a local
  torchrun, uninterrupted;
- SLURM's warning signal (what `--signal=USR1@<s>` sends <s> seconds before the time limit, and what a
  preemption's SIGTERM does) reaches the job step on both nodes: every rank stops after the same step, exactly
  one checkpoint is written (marked preempted), the wrapper on each node exits 75 and srun returns it to the stage,
  Snakemake's retry resubmits, and the new job resumes from that checkpoint; losses after the resume and the final
  weights equal the uninterrupted run's bit for bit (DDP's gradient buckets after a resume: Trainer.settle_grad_buckets);
- a rerun after success submits nothing.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import torch
from mnrun import (local_reference, metrics, snakemake, snakemake_cmd, snakemake_env, squeue, train_logs, wait_for,
                   workflow)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

EPOCHS = 8  # 64 steps of ~0.06 s or more: the signal lands mid-run


def _weights(stage) -> dict:
    from safetensors.torch import load_file

    files = sorted((stage / "final").glob("*.safetensors"))
    assert files
    return {k: v for f in files for k, v in load_file(f).items()}


def test_two_nodes_of_two_ranks_train_as_one_node_of_four_through_a_preemption(slurm_multinode, tmp_path):
    wd = workflow(tmp_path, "pre", {"nodes": 2, "nproc_per_node": 2, "signal_seconds": 30}, {"epochs": EPOCHS})
    stage = wd / "out" / "train"
    proc = subprocess.Popen(snakemake_cmd("--retries", "1"), cwd=wd, env=snakemake_env(slurm_multinode),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # signal after 8 steps: those (and the few until the stop) are compared bit for bit, uninterrupted
        wait_for(lambda: (stage / "metrics.jsonl").is_file()
                  and (stage / "metrics.jsonl").read_text().count("\n") >= 8, 240, "8 training steps", proc)
        jobs = [j for j, comment, state, nodes in squeue(slurm_multinode) if comment == "rule_train"]
        assert len(jobs) == 1, squeue(slurm_multinode)
        # the signal SLURM sends at the time-limit warning: to every process of the job's steps, on both nodes
        subprocess.run(["scancel", "--signal=USR1", jobs[0]], check=True, timeout=30, env=slurm_multinode["env"])
        out, _ = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out[-5000:]
    assert "--signal=USR1@30" in out  # the sbatch request carries the warning signal

    first, second = train_logs(wd)  # exactly two jobs: the preempted one and the retry
    stops = re.findall(r"preempted by signal 10: checkpoint (step-\d+) \(step (\d+)\) saved", first)
    assert len(stops) == 1, first[-4000:]
    name, step = stops[0][0], int(stops[0][1])
    total = 128 // 16 * EPOCHS
    assert 8 <= step < total
    assert "written in" not in first  # no periodic checkpoint: the preemption's is the only one of the first job
    ckpts = sorted(p.name for p in (stage / "checkpoints").iterdir() if p.is_dir())
    assert ckpts == [name, f"step-{total:08d}"]  # the preemption's and the final step's
    assert first.count("cpt.launch.torchrun: preempted") == 2  # the wrapper on each node turned the stop into 75 ...
    # ... and the stage reports the preemption: srun returns 75, or 143 when it terminated the slower node (its
    # --kill-on-bad-exit) after the first one exited 75; the preempted checkpoint of this launch decides
    assert re.search(r"preempted after a checkpoint \(launcher exit code (75|143)\)", first), first[-3000:]
    state = json.loads((stage / "checkpoints" / name / "state.json").read_text())
    assert state["step"] == step and state["preempted"] is True
    assert re.search(rf"resumed from \S*{name} at step {step} of {total}", second), second[-4000:]
    for log in (first, second):
        assert "srun --nodes=2 --ntasks=2" in log and "--nnodes=2" in log and "--nproc_per_node=2" in log
        assert "--rdzv_endpoint=node1:" in log and "Host: node1" in log

    local_reference(wd, tmp_path / "1x4", nproc=4, train={"epochs": EPOCHS})
    a, b = metrics(stage), metrics(tmp_path / "1x4")
    assert [m["step"] for m in a] == list(range(1, total + 1)) == [m["step"] for m in b]
    assert [m["tokens"] for m in a] == [m["tokens"] for m in b]  # same samples in the same order
    # bit for bit, before and after the resume (4 ranks: the resumed process sums its gradients in the buckets
    # the uninterrupted run had, cpt.train.trainer.Trainer.settle_grad_buckets)
    assert [m["loss"] for m in a] == [m["loss"] for m in b]
    wa, wb = _weights(stage), _weights(tmp_path / "1x4")
    assert wa.keys() == wb.keys()
    assert [k for k in wa if not torch.equal(wa[k], wb[k])] == []

    again = snakemake(slurm_multinode, wd, "--retries", "0", timeout=200)
    assert again.returncode == 0 and "has been submitted with SLURM jobid" not in again.stdout + again.stderr
    assert "Nothing to be done" in again.stdout + again.stderr
