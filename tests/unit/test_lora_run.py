"""LoRA stages through the real trainer (`python -m cpt.train`, world size 1, ColossalAI Booster on CPU):
embeddings-only full-parameter stage -> LoRA stage (the hand-over), only adapters and new rows change, the merged
export, the adapter, the memory facts in run.json, and a SIGKILL resume that ends bit-identical."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cpt.testing import make_bucket_dataset, make_tiny_model

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
N_BASE, VOCAB, HIDDEN = 96, 128, 32
LORA = ["--set", "lora.rank=4", "--set", "lora.alpha=8", "--set", "lora.dropout=0.1",
        "--set", "lora.train_embeddings=new_rows"]
COMMON = ["--set", "plugin=ddp", "--set", "precision=fp32", "--set", "micro_batch_size=4", "--set", "lr=1e-2",
          "--set", "warmup_steps=0", "--set", "save_interval=2"]


def train(*args, extra_env=None):
    e = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO / "src"), **(extra_env or {}))
    return subprocess.run([sys.executable, "-m", "cpt.train", *args, "--no-progress"], env=e, capture_output=True,
                          text=True, timeout=300, cwd=REPO)


def tensors(d):
    from safetensors.torch import load_file

    out = {}
    for f in sorted(Path(d).glob("*.safetensors")):
        out.update(load_file(f))
    return out


def bits(t: torch.Tensor) -> bytes:
    return t.contiguous().view(-1).view(torch.uint8).numpy().tobytes()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora-inputs")
    model = make_tiny_model(root / "model", vocab_size=VOCAB, hidden=HIDDEN, layers=2, seed=3)
    cfg = json.loads((model / "config.json").read_text())
    cfg["cpt_base_vocab_size"] = N_BASE  # as model init writes it: rows >= 96 are the new vocabulary
    (model / "config.json").write_text(json.dumps(cfg))
    data = make_bucket_dataset(root / "ds", [12, 8], vocab_size=VOCAB, seed=4)
    return root, model, data


@pytest.fixture(scope="module")
def embeddings_stage(inputs):
    """Stage 1 of the lesson: embeddings only, full-parameter."""
    root, model, data = inputs
    out = root / "embeddings"
    r = train("--model", str(model), "--dataset", str(data), "--output", str(out), *COMMON,
              "--set", "freeze_non_embeds=true", "--set", "max_steps=3")
    assert r.returncode == 0, r.stderr[-4000:]
    return out / "final"


@pytest.fixture(scope="module")
def lora_stage(inputs, embeddings_stage):
    """Stage 2: LoRA + new rows from stage 1's final/ (base vocabulary from its config.json), strong weight decay."""
    root, _, data = inputs
    out = root / "lora"
    r = train("--model", str(embeddings_stage), "--dataset", str(data), "--output", str(out), *COMMON, *LORA,
              "--set", "weight_decay=0.5")
    assert r.returncode == 0, r.stderr[-4000:]
    return out


def test_only_adapters_and_new_rows_change_and_the_merge_is_base_plus_delta(embeddings_stage, lora_stage):
    assert json.loads((embeddings_stage / "config.json").read_text())["cpt_base_vocab_size"] == N_BASE  # carried
    start = tensors(embeddings_stage)
    # the training state: every tensor but the adapters and the new rows is bit-identical to the stage's input
    latest = lora_stage / "checkpoints" / (lora_stage / "checkpoints" / "latest").read_text().strip()
    state = tensors(latest / "model")
    n_lora = 0
    for key, value in state.items():
        if "lora_" in key:
            n_lora += 1
            if "lora_B" in key:
                assert value.abs().sum() > 0, key  # B starts at zero: it trained
            continue
        name = key.rsplit(".", 1)[0]
        if key.endswith(".old_rows"):
            assert bits(value) == bits(start[f"{name}.weight"][:N_BASE]), key
        elif key.endswith(".new_rows"):
            assert (value - start[f"{name}.weight"][N_BASE:]).abs().sum(1).min() > 0, key  # every new row moved
        else:
            assert bits(value) == bits(start[key]), key
    assert n_lora == 2 * 2 * 7  # A and B x 2 layers x 7 target modules
    # final/: plain HF; merged weights = start + B A alpha/r from the adapter; old rows bit-identical
    from transformers import AutoModelForCausalLM

    final = tensors(lora_stage / "final")
    adapter = tensors(lora_stage / "adapter")
    assert final.keys() == start.keys()
    for key, value in final.items():
        if key in ("model.embed_tokens.weight", "lm_head.weight"):
            assert bits(value[:N_BASE]) == bits(start[key][:N_BASE]), key
            assert torch.equal(value[N_BASE:], adapter[f"base_model.model.{key}"][N_BASE:])
        elif key.endswith("_proj.weight"):
            layer = f"base_model.model.{key.removesuffix('.weight')}"
            delta = adapter[f"{layer}.lora_B.weight"] @ adapter[f"{layer}.lora_A.weight"] * (8 / 4)
            assert not torch.equal(value, start[key])
            assert torch.allclose(value, start[key] + delta, atol=1e-6, rtol=0), key
        else:
            assert bits(value) == bits(start[key]), key
    plain = AutoModelForCausalLM.from_pretrained(lora_stage / "final").eval()
    assert not hasattr(plain, "peft_config") and plain.config.cpt_base_vocab_size == N_BASE
    # adapter/: peft on top of the stage's input gives the merged model's logits
    from peft import PeftModel

    peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(embeddings_stage),
                                           lora_stage / "adapter").eval()
    ids = torch.tensor([[5, 100, 17, 120, 3, 97, 60, 127]])
    assert torch.allclose(peft_model(input_ids=ids).logits, plain(ids).logits, atol=1e-5)


def test_run_json_reports_trainable_parameters_and_optimizer_state(lora_stage):
    facts = json.loads((lora_stage / "run.json").read_text())["trainer"]
    new_rows = 2 * (VOCAB - N_BASE) * HIDDEN  # embed_tokens + lm_head rows >= 96
    adapters = 2 * sum(4 * (i + o) for i, o in [(32, 32)] * 4 + [(32, 64), (32, 64), (64, 32)])
    assert facts["params_trainable_embeddings"] == new_rows
    assert facts["params_trainable_adapters"] == adapters
    assert facts["params_trainable"] == new_rows + adapters
    n_tensors = 2 + 2 * 2 * 7
    # AdamW: two fp32 moments per trainable value + a 4-byte step counter per tensor
    assert facts["optimizer_state_bytes"] == 8 * (new_rows + adapters) + 4 * n_tensors
    assert facts["lora"]["train_embeddings"] == "new_rows" and facts["lora"]["base_vocab_size"] == N_BASE


def test_sigkill_then_rerun_of_a_lora_stage_is_bit_identical(inputs, embeddings_stage, lora_stage):
    root, _, data = inputs
    out = root / "lora-killed"
    args = ["--model", str(embeddings_stage), "--dataset", str(data), "--output", str(out), *COMMON, *LORA,
            "--set", "weight_decay=0.5"]
    killed = train(*args, extra_env={"CPT_TRAIN_FAULT_SIGKILL_AFTER_STEP": "3"})
    assert killed.returncode != 0
    assert (out / "checkpoints" / "latest").read_text().strip() == "step-00000002"
    assert not (out / "final").exists() and not (out / "adapter").exists()
    resumed = train(*args)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "resumed from" in resumed.stderr
    for sub in ("final", "adapter"):
        a, b = tensors(out / sub), tensors(lora_stage / sub)
        assert a.keys() == b.keys()
        for k in a:
            assert bits(a[k]) == bits(b[k]), (sub, k)
    m = [json.loads(x)["loss"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert m == [json.loads(x)["loss"] for x in (lora_stage / "metrics.jsonl").read_text().splitlines()]


def test_tied_embeddings_all_rows_on_zero2(tmp_path):
    """A model with tied embeddings (as SmolLM2): train_embeddings all under ZeRO; the export stays tied."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = make_tiny_model(tmp_path / "model", vocab_size=VOCAB, hidden=HIDDEN, layers=2, seed=5, tied=True)
    data = make_bucket_dataset(tmp_path / "ds", [8], vocab_size=VOCAB, seed=6)
    out = tmp_path / "out"
    r = train("--model", str(model), "--dataset", str(data), "--output", str(out), *COMMON,
              "--set", "plugin=zero2", "--set", "lora.rank=2", "--set", "lora.train_embeddings=all",
              "--set", "lora.target_modules=[q_proj, v_proj]")
    assert r.returncode == 0, r.stderr[-4000:]
    start, final = tensors(model), tensors(out / "final")
    assert "lm_head.weight" not in final and final.keys() == start.keys()
    changed = {k for k in final if not torch.equal(final[k], start[k])}
    assert changed == {"model.embed_tokens.weight"} | {f"model.layers.{i}.self_attn.{m}_proj.weight"
                                                      for i in (0, 1) for m in "qv"}
    plain = AutoModelForCausalLM.from_pretrained(out / "final").eval()
    assert plain.lm_head.weight is plain.model.embed_tokens.weight
    peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model), out / "adapter").eval()
    ids = torch.tensor([[5, 100, 17, 120, 3]])
    assert torch.allclose(peft_model(input_ids=ids).logits, plain(ids).logits, atol=1e-5)
