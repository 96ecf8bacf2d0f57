"""Orphaned ranks (issue 24, item 1): a kill -9 of the launcher's process group takes the rank processes with it
(torchrun starts them in their own sessions; they die with their parent now), so an immediate rerun gets the lock,
resumes and ends bit-identical to an uninterrupted run; a rank blocked in a collective stops after
train.dist_timeout_s with a message naming the rank."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from cpt.testing import (
    assert_same_bits,
    final_tensors,
    make_bucket_dataset,
    make_tiny_model,
    read_metrics,
    run_torchrun,
    torchrun_command,
)

REPO = Path(__file__).resolve().parents[2]
SIZES = [8, 8]
ARGS = ["--set", "plugin=ddp", "--set", "precision=fp32", "--set", "micro_batch_size=2", "--set", "lr=3e-3",
        "--set", "warmup_steps=1", "--set", "save_interval=2", "--set", "tensorboard=false", "--no-progress"]
HANG = "CPT_TRAIN_FAULT_HANG_AFTER_STEP"
pytestmark = [pytest.mark.distributed, pytest.mark.slow]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("orphans")
    model = make_tiny_model(root / "model", vocab_size=128, hidden=16, layers=1, heads=2, seed=3)
    data = make_bucket_dataset(root / "ds", SIZES, vocab_size=128, seed=4)
    return model, data


def train_args(inputs, out, *extra):
    model, data = inputs
    return ["--model", str(model), "--dataset", str(data), "--output", str(out), *ARGS, *extra]


def env(**extra):
    e = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1", **extra)
    e["PYTHONPATH"] = str(REPO / "src") + os.pathsep + e.get("PYTHONPATH", "")
    return e


def wait_for(condition, what: str, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_kill_9_of_the_launcher_group_then_an_immediate_rerun_equals_an_uninterrupted_run(inputs, tmp_path):
    ref = tmp_path / "ref"
    r = run_torchrun(REPO, 2, train_args(inputs, ref))
    assert r.returncode == 0, r.stderr[-4000:]

    out = tmp_path / "stage"
    # the launcher in its own process group; the last rank hangs after step 3, the other blocks in a collective
    launcher = subprocess.Popen(torchrun_command(sys.executable, 2, train_args(inputs, out)), env=env(**{HANG: "3"}),
                                cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    metrics = out / "metrics.jsonl"
    wait_for(lambda: metrics.is_file() and len(metrics.read_text().splitlines()) >= 3, "step 3")
    ranks = [p for p in psutil.Process(launcher.pid).children(recursive=True) if "cpt.train" in " ".join(p.cmdline())]
    assert len(ranks) == 2
    assert {os.getsid(p.pid) for p in ranks} != {os.getsid(launcher.pid)}  # torchrun gives them their own sessions
    os.killpg(launcher.pid, signal.SIGKILL)
    launcher.wait()
    gone, alive = psutil.wait_procs(ranks, timeout=30)
    assert not alive, f"rank processes outlived their launcher: {[p.pid for p in alive]}"

    rerun = run_torchrun(REPO, 2, train_args(inputs, out))  # at once: no lock holder left, resumes at step 2
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    assert "resumed from" in rerun.stderr and "is writing this output" not in rerun.stderr
    assert_same_bits(final_tensors(out), final_tensors(ref))
    assert [m["loss"] for m in read_metrics(out)][-3:] == [m["loss"] for m in read_metrics(ref)][-3:]


def test_a_blocked_collective_ends_after_dist_timeout_naming_the_rank(inputs, tmp_path):
    out = tmp_path / "stage"
    start = time.monotonic()
    r = run_torchrun(REPO, 2, train_args(inputs, out, "--set", "dist_timeout_s=3"), extra_env={HANG: "1"},
                     timeout=300)
    assert r.returncode != 0
    assert ("[rank 0] error: a collective operation did not complete within train.dist_timeout_s = 3 s"
            in r.stderr), r.stderr[-4000:]
    assert "another rank is hung or gone" in r.stderr
    assert time.monotonic() - start < 240  # not torch's 30 minutes
