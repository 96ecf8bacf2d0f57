"""The project's real trainer (tests/slurm/train/Snakefile: cpt.launch.stage + stage_launcher, as the workflow's
train rule) through `snakemake --profile profiles/slurm` on the N-node test cluster: 2 nodes x 2 ranks trains
exactly as 1 node x 4 ranks (same world size, same ranks, gloo); a rerun after success submits nothing.

The 1 x 4 reference runs the same stage code (cpt.launch.stage.run_stage) with a local torchrun on the same
inputs: a second SLURM round trip would add a minute of Snakemake status polling to CI and test nothing more."""

from __future__ import annotations

import pytest
from mnrun import local_reference, metrics, snakemake, train_logs, workflow

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


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
