"""Single-process runs of `python -m cpt.train` (world size 1, real Booster + LowLevelZero on CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cpt.testing import make_bucket_dataset, make_tiny_model

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def train(*args):
    e = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO / "src"))
    return subprocess.run([sys.executable, "-m", "cpt.train", *args, "--no-progress"], env=e, capture_output=True,
                          text=True, timeout=240, cwd=REPO)


def tensors(d):
    from safetensors.torch import load_file

    out = {}
    for f in sorted(Path(d).glob("*.safetensors")):
        out.update({k.removeprefix("module."): v for k, v in load_file(f).items()})
    return out


def test_freeze_non_embeds_with_neftune_then_chain_stage(tmp_path):
    model = make_tiny_model(tmp_path / "model", vocab_size=128, hidden=32, layers=2, seed=3)
    data = make_bucket_dataset(tmp_path / "ds", [12, 8], vocab_size=128, seed=4, mask_prefix=3)
    out = tmp_path / "sft"
    r = train("--model", str(model), "--dataset", str(data), "--output", str(out), "--set", "plugin=zero2",
              "--set", "precision=fp32", "--set", "freeze_non_embeds=true", "--set", "neftune_alpha=5",
              "--set", "micro_batch_size=4", "--set", "lr=1e-2", "--set", "warmup_steps=0",
              "--set", "use_doc_lengths=true", "--set", "cross_document_attention=false")
    assert r.returncode == 0, r.stderr[-4000:]
    before, after = tensors(model), tensors(out / "final")
    assert before.keys() == after.keys()
    for name in before:
        if "embed_tokens" in name or "lm_head" in name:
            assert not before[name].equal(after[name]), name
        else:
            assert before[name].equal(after[name]), name  # bit-identical
    # next stage starts from this stage's final weights, fresh optimizer (config says init: weights)
    out2 = tmp_path / "next"
    r = train("--model", str(out / "final"), "--dataset", str(data), "--output", str(out2), "--set", "plugin=ddp",
              "--set", "precision=fp32", "--set", "max_steps=2", "--set", "micro_batch_size=4")
    assert r.returncode == 0, r.stderr[-4000:]
    m = [json.loads(x) for x in (out2 / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in m] == [1, 2]
    assert m[0]["lr"] < 1e-4  # warmup restarted: a fresh schedule, not the previous stage's
    # rerunning a finished stage with a changed setting is refused (exact resume needs the same settings)
    r = train("--model", str(out / "final"), "--dataset", str(data), "--output", str(out2), "--set", "plugin=ddp",
              "--set", "precision=fp32", "--set", "max_steps=2", "--set", "micro_batch_size=4", "--set", "lr=5e-4")
    assert r.returncode == 2 and "train.['lr']" in r.stderr


def adam_steps(checkpoint_dir):
    """The Adam step counters stored in a checkpoint's optimizer directory (torch .bin or safetensors shards)."""
    import torch

    steps = set()
    for f in sorted((Path(checkpoint_dir) / "optimizer").iterdir()):
        if f.suffix == ".bin":
            state = torch.load(f, weights_only=False)
            if isinstance(state, dict):
                steps |= {float(v["step"]) for v in state.values() if isinstance(v, dict) and "step" in v}
        elif f.suffix == ".safetensors":
            from safetensors.torch import load_file

            steps |= {float(v) for k, v in load_file(f).items() if k.endswith("step")}
    return steps


def test_init_checkpoint_carries_the_optimizer_into_the_next_stage(tmp_path):
    model = make_tiny_model(tmp_path / "model", vocab_size=128, hidden=32, layers=2, seed=3)
    data = make_bucket_dataset(tmp_path / "ds", [12, 8], vocab_size=128, seed=4)
    common = ["--set", "plugin=ddp", "--set", "precision=fp32", "--set", "micro_batch_size=4",
              "--set", "tensorboard=false"]
    a = tmp_path / "a"
    r = train("--model", str(model), "--dataset", str(data), "--output", str(a), *common, "--set", "save_interval=2")
    assert r.returncode == 0, r.stderr[-4000:]
    assert adam_steps(a / "checkpoints" / "step-00000004") == {4.0}
    b = tmp_path / "b"
    r = train("--model", str(a / "final"), "--dataset", str(data), "--output", str(b), *common,
              "--set", "init=checkpoint", "--set", f"init_checkpoint={a / 'checkpoints' / 'step-00000004'}",
              "--set", "max_steps=1", "--set", "save_interval=1")
    assert r.returncode == 0, r.stderr[-4000:]
    assert adam_steps(b / "checkpoints" / "step-00000001") == {5.0}  # 4 carried + 1; a fresh optimizer says 1
    r = train("--model", str(a / "final"), "--dataset", str(data), "--output", str(tmp_path / "c"), *common,
              "--set", "init=checkpoint", "--set", f"init_checkpoint={tmp_path / 'nowhere'}", "--set", "max_steps=1")
    assert r.returncode == 2 and "train.init_checkpoint" in r.stderr


def test_zero2_fp16_on_cpu_reports_unscaled_gradient_norms(tmp_path):
    import math

    model = make_tiny_model(tmp_path / "model", vocab_size=128, hidden=32, layers=2, seed=3)
    data = make_bucket_dataset(tmp_path / "ds", [12], vocab_size=128, seed=4)
    out = tmp_path / "o"
    r = train("--model", str(model), "--dataset", str(data), "--output", str(out), "--set", "plugin=zero2",
              "--set", "precision=fp16", "--set", "micro_batch_size=4", "--set", "tensorboard=false")
    assert r.returncode == 0, r.stderr[-4000:]
    m = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(m) == 3 and abs(m[0]["loss"] - math.log(128)) < 0.3  # a random model's loss ~ ln(vocab)
    # the loss scale starts at 2**16: a scaled norm would be ~1e4-1e5
    assert all(0 < x["grad_norm"] < 100 for x in m), [x["grad_norm"] for x in m]
    info = json.loads((out / "run.json").read_text())["trainer"]
    assert info["precision"] == "fp16" and info["load_dtype"] == "float16"
