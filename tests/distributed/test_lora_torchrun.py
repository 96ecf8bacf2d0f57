"""LoRA stages under `torchrun --nproc_per_node 2` on CPU (gloo), ddp and zero2, with train_embeddings new_rows.

Proves: both ranks train the same adapters (the final weights' digest agrees), only the adapted layers and the new
embedding rows move (old rows bit-identical to the stage's input, every other tensor byte for byte), the merged
final/ loads with plain transformers, zero2 follows ddp's loss curve and ends at ddp's weights while holding half the
optimizer state per rank, and a zero2 LoRA stage killed with SIGKILL and re-run ends bit-identical.

LoRA dropout is 0 here: the plugins draw the dropout masks from different points of the random stream, so with
dropout the two curves part after the first update (B starts at zero, so step 1's loss agrees but its gradient of
B does not). The resume of a stage with dropout is test_lora_run's.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cpt.testing import (
    assert_curves_agree,
    assert_same_bits,
    final_tensors,
    make_bucket_dataset,
    make_tiny_model,
    read_metrics,
    run_torchrun,
)

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
N_BASE, VOCAB = 96, 128
TARGETS = ("q_proj", "v_proj", "down_proj")
ARGS = ["--set", "precision=fp32", "--set", "micro_batch_size=2", "--set", "epochs=2", "--set", "lr=1e-2",
        "--set", "warmup_steps=1", "--set", "weight_decay=0.5", "--set", "save_interval=3", "--set", "keep_last=1",
        "--set", "tensorboard=false", "--set", "lora.rank=4", "--set", "lora.alpha=8",
        "--set", "lora.dropout=0.0",
        "--set", "lora.train_embeddings=new_rows", "--set", f"lora.target_modules=[{', '.join(TARGETS)}]",
        "--no-progress"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora-dist-inputs")
    model = make_tiny_model(root / "model", vocab_size=VOCAB, hidden=32, layers=2, heads=4, seed=21)
    cfg = json.loads((model / "config.json").read_text())
    cfg["cpt_base_vocab_size"] = N_BASE  # as model init writes it
    (model / "config.json").write_text(json.dumps(cfg))
    data = make_bucket_dataset(root / "ds", [12, 8], vocab_size=VOCAB, min_len=8, max_len=24, seed=22)
    return model, data


def train(inputs, out, plugin, extra_env=None):
    model, data = inputs
    return run_torchrun(REPO, 2, ["--model", str(model), "--dataset", str(data), "--output", str(out),
                                  "--set", f"plugin={plugin}", *ARGS], extra_env=extra_env)


@pytest.fixture(scope="module")
def runs(inputs, tmp_path_factory):
    out = {}
    for plugin in ("ddp", "zero2"):
        out[plugin] = tmp_path_factory.mktemp(f"lora-{plugin}") / "stage"
        r = train(inputs, out[plugin], plugin)
        assert r.returncode == 0, r.stderr[-4000:]
    return out


def input_tensors(model_dir):
    from safetensors.torch import load_file

    return {k: v for f in sorted(Path(model_dir).glob("*.safetensors")) for k, v in load_file(f).items()}


@pytest.mark.parametrize("plugin", ["ddp", "zero2"])
def test_lora_trains_on_two_ranks_and_moves_only_adapted_layers_and_new_rows(plugin, inputs, runs):
    from transformers import AutoModelForCausalLM

    out = runs[plugin]
    m = read_metrics(out)
    assert [x["step"] for x in m] == list(range(1, 11))  # 20 sequences / (2 ranks x 2) x 2 epochs
    assert sum(x["loss"] for x in m[-3:]) < sum(x["loss"] for x in m[:3]) - 0.1
    prov = json.loads((out / "final" / "provenance.json").read_text())
    assert prov["world_size"] == 2 and prov["ranks_agree_params_sha256"]
    start, final = input_tensors(inputs[0]), final_tensors(out)
    assert final.keys() == start.keys()
    adapted = {f"model.layers.{i}.{m}.weight" for i in (0, 1)
               for m in ("self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj")}
    for key, value in final.items():
        if key in ("model.embed_tokens.weight", "lm_head.weight"):
            assert value[:N_BASE].view(torch.uint8).equal(start[key][:N_BASE].view(torch.uint8)), key
            assert (value[N_BASE:] - start[key][N_BASE:]).abs().sum() > 0, key
        elif key in adapted:
            assert not torch.equal(value, start[key]), key
        else:
            assert value.view(torch.uint8).equal(start[key].view(torch.uint8)), key
    plain = AutoModelForCausalLM.from_pretrained(out / "final")
    assert not hasattr(plain, "peft_config")
    assert (out / "adapter" / "adapter_config.json").is_file()


def test_zero2_follows_ddp_and_shards_the_optimizer_state(runs):
    ddp, zero2 = runs["ddp"], runs["zero2"]
    assert_curves_agree(read_metrics(zero2), read_metrics(ddp), 1e-4)
    a, b = final_tensors(zero2), final_tensors(ddp)
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-4, rtol=1e-4), k
    fd, fz = (json.loads((o / "run.json").read_text())["trainer"] for o in (ddp, zero2))
    assert fd["params_trainable"] == fz["params_trainable"] > 0
    assert fd["params_trainable"] < fd["params_total"] / 2
    # ddp: each rank holds the whole AdamW state (two fp32 moments per trainable value); zero2: about half each
    assert fd["optimizer_state_bytes_max_rank"] >= 8 * fd["params_trainable"]
    assert fz["optimizer_state_bytes_max_rank"] < 0.6 * fd["optimizer_state_bytes_max_rank"]


def test_zero2_lora_sigkill_then_rerun_is_bit_identical(inputs, runs, tmp_path):
    out = tmp_path / "stage"
    killed = train(inputs, out, "zero2", extra_env={"CPT_TRAIN_FAULT_SIGKILL_AFTER_STEP": "5"})
    assert killed.returncode != 0
    assert (out / "checkpoints" / "latest").read_text().strip() == "step-00000003"
    assert not (out / "final").exists()
    resumed = train(inputs, out, "zero2")
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "resumed from" in resumed.stderr
    assert_same_bits(final_tensors(out), final_tensors(runs["zero2"]))
    ref = runs["zero2"] / "adapter" / "adapter_model.safetensors"
    from safetensors.torch import load_file

    assert_same_bits(load_file(out / "adapter" / "adapter_model.safetensors"), load_file(ref))
    assert [x["loss"] for x in read_metrics(out)] == [x["loss"] for x in read_metrics(runs["zero2"])]
