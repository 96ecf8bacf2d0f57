"""Single-process runs of `python -m cpt.train` (world size 1, real Booster + LowLevelZero on CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cpt.train.testing import make_bucket_dataset, make_tiny_model

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
