"""Elastic resume: a run checkpointed by 2 processes continues with 1 or 4 (torchrun, CPU, gloo), ddp and zero2.

The optimizer state is resharded by the plugin on load, the sampler continues at the global sample position, and
every sample of the bucket order is trained exactly once per epoch overall (the sample traces of both runs
together, checked as test_train_torchrun checks one run). The buckets here divide into global batches of 8
sequences, which the resumed run keeps (accumulation_steps 2 -> 4 on 1 process, 2 -> 1 on 4): each optimizer step
then sees the same samples as in an uninterrupted 2-process run, so the losses of every step match that run --
which they would not if the optimizer state (Adam moments) had been lost in the resharding.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cpt.testing import check_bucket_order, make_bucket_dataset, make_tiny_model, read_trace, torchrun_command

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SIZES = [24, 16, 32]  # multiples of the global batch (8): 9 steps per epoch on 1, 2 or 4 processes
BASE = ["--set", "precision=fp32", "--set", "micro_batch_size=2", "--set", "accumulation_steps=2",
        "--set", "epochs=2", "--set", "lr=3e-3", "--set", "warmup_steps=2", "--set", "save_interval=4",
        "--set", "keep_last=2", "--set", "trace_samples=true", "--set", "tensorboard=false", "--no-progress"]


def env(extra=None):
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO / "src") + os.pathsep + e.get("PYTHONPATH", "")
    e.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    e.update(extra or {})
    return e


def run(nproc, args, extra_env=None, timeout=600):
    cmd = (torchrun_command(sys.executable, nproc, args) if nproc > 1 else
           [sys.executable, "-m", "cpt.train", *args])
    return subprocess.run(cmd, env=env(extra_env), capture_output=True, text=True, timeout=timeout, cwd=REPO)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("elastic-inputs")
    model = make_tiny_model(root / "model", vocab_size=256, hidden=32, layers=2, heads=4, seed=11)
    data = make_bucket_dataset(root / "ds", SIZES, vocab_size=256, min_len=8, max_len=24, seed=12)
    return model, data


def args(inputs, out, plugin):
    model, data = inputs
    return ["--model", str(model), "--dataset", str(data), "--output", str(out), "--set", f"plugin={plugin}", *BASE]


def metrics(out):
    return [json.loads(x) for x in (Path(out) / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory):
    """An uninterrupted 2-process ddp run (zero2 follows the same trajectory, see test_train_torchrun)."""
    out = tmp_path_factory.mktemp("elastic-ref") / "stage"
    r = run(2, args(inputs, out, "ddp"))
    assert r.returncode == 0, r.stderr[-4000:]
    return metrics(out)


@pytest.fixture(scope="module")
def interrupted(inputs, tmp_path_factory):
    """Per plugin: a 2-process run killed after step 6 (its latest checkpoint is step 4)."""
    runs = {}

    def get(plugin):
        if plugin not in runs:
            out = tmp_path_factory.mktemp(f"elastic-{plugin}") / "stage"
            r = run(2, args(inputs, out, plugin), {"CPT_TRAIN_FAULT_SIGKILL_AFTER_STEP": "6"})
            assert r.returncode != 0
            assert (out / "checkpoints" / "latest").read_text().strip() == "step-00000004"
            assert max(x["step"] for x in metrics(out)) == 6
            runs[plugin] = out
        return runs[plugin]

    return get


@pytest.mark.parametrize("plugin", ["ddp", "zero2"])
@pytest.mark.parametrize("nproc", [1, 4])
def test_resume_on_another_number_of_processes(inputs, reference, interrupted, tmp_path, plugin, nproc):
    out = tmp_path / "stage"
    shutil.copytree(interrupted(plugin), out)
    r = run(nproc, args(inputs, out, plugin))
    assert r.returncode == 0, r.stderr[-4000:]
    assert "elastic resume: the checkpoint was written by 2 processes" in r.stderr
    accum = {1: 4, 4: 1}[nproc]
    assert f"accumulation_steps 2 -> {accum} keeps the global batch of 8 sequences" in r.stderr
    assert f"resumed from {out / 'checkpoints' / 'step-00000004'} at step 4 of 18" in r.stderr
    # progress from rank 0 only; library warnings once, not once per rank
    assert len(re.findall(r"train step 10/18 \(55\.6%\) \| tokens [\d,]+ \| loss [\d.]+ .* ETA", r.stderr)) == 1
    assert re.search(r"train step 12/18 \(66\.7%\) .* ETA \S+ \| checkpoint \S+step-00000012 written in [\d.]+ s",
                     r.stderr)  # a checkpoint step between progress lines: its full line
    assert re.search(r"train step 18/18 \| checkpoint \S+step-00000018 written", r.stderr)  # right after its line
    warnings = [line for line in r.stderr.splitlines() if "Warning:" in line]
    assert len(warnings) == len(set(warnings)), warnings
    # every sample exactly once per epoch, buckets in order, across both runs (steps 5-6 of the killed run dropped)
    trace = read_trace(out)
    check_bucket_order(trace, SIZES)
    assert {t["rank"] for t in trace if t["step"] > 4} == set(range(nproc))
    assert {t["rank"] for t in trace if t["step"] <= 4} == {0, 1}
    # the same trajectory as the uninterrupted 2-process run: same samples per step, optimizer state kept
    m = metrics(out)
    assert [x["step"] for x in m] == list(range(1, 19))
    for a, b in zip(m, reference):
        assert a["tokens"] == b["tokens"], a["step"]
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4), a["step"]
    prov = json.loads((out / "final" / "provenance.json").read_text())
    assert prov["world_size"] == nproc and prov["steps"] == 18
    state = json.loads((out / "checkpoints" / "step-00000018" / "state.json").read_text())
    assert state["world_size"] == nproc and state["accumulation_steps"] == accum and state["global_batch"] == 8
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(out / "final")
