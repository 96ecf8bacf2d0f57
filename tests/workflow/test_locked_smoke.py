"""A locked recipe config end to end on CPU, locally: the real DAG of config/colossal-llama-2-13b.yaml with only
the scale overlay config/overlays/cpu-smoke.yaml (tiny LLaMA-2 carrying the real tokenizer, small real text, step
caps, 2 ranks) and config/overlays/engine-torch.yaml (every stage on PyTorch's own engine: zero2 bf16 as FSDP2
shard-grad-op). Every rule of the DAG runs; the final tokenizer has exactly the published 69,104 pieces.
The 7B locked config runs the same smoke on the published ColossalAI engine through `snakemake --profile
profiles/slurm` on the 2-node SLURM test cluster, training on 2 nodes (tests/slurm/test_slurm_locked_multinode.py);
both make the checks of tests/workflow/locked.py, so both engines run a locked config in CI."""

from __future__ import annotations

import os
import re

import pytest

from .conftest import REPO, snakemake
from .locked import ENGINE_TORCH, OVERLAY, check_plan, check_results, job_counts, make_smoke_inputs

# a whole locked DAG with 4,096-token steps over a 69,104-row LM head: minutes, more when the other worker trains
# too (over 1,200 s once, next to the 2-node cluster smoke and a second verification run): its own bound
pytestmark = [pytest.mark.workflow, pytest.mark.slow, pytest.mark.timeout(2700)]


def test_locked_13b_runs_end_to_end_on_cpu_on_the_torch_engine(tmp_path):
    locked = REPO / "config" / "colossal-llama-2-13b.yaml"
    overlays = (OVERLAY, ENGINE_TORCH)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    make_smoke_inputs(tmp_path, env)
    plan = job_counts(snakemake(tmp_path, locked, "-n", overlays=overlays).stdout)
    check_plan(plan, locked)

    run = snakemake(tmp_path, locked, overlays=overlays)
    text = run.stdout + run.stderr
    ran: dict[str, int] = {}
    for rule in re.findall(r"Finished jobid: \d+ \(Rule: (\w+)\)", text):
        ran[rule] = ran.get(rule, 0) + 1
    assert ran == plan  # every rule of the DAG ran, each as often as planned

    check_results(tmp_path, locked, engine="torch")
    again = snakemake(tmp_path, locked, "-n", overlays=overlays)
    assert "Nothing to be done" in again.stdout + again.stderr
