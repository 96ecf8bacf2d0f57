"""cpt.train.lora without the trainer: settings, row-split embeddings, merge, export, adapter (real peft, tiny
LLaMAs). The trainer runs are in test_lora_run.py and tests/distributed/test_lora_torchrun.py."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from cpt.core.errors import ConfigError, TrainError
from cpt.train import lora
from cpt.train.config import LoraSettings, from_mapping, load_config


def tiny(vocab=96, tie=False, seed=0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                      tie_word_embeddings=tie, pad_token_id=0)
    return LlamaForCausalLM(cfg).eval()


def adapted(model, settings: LoraSettings, seed=1):
    """get_peft_model (what booster.enable_lora calls) with non-zero B, so the merged delta is not zero."""
    from peft import get_peft_model

    pm = get_peft_model(model, lora.peft_config(settings))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in pm.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return pm.eval()  # no LoRA dropout


# ------------------------------------------------------------------------------------------------ settings
def test_schema_defaults_are_the_settings_defaults():
    from cpt.core.schema import complete

    assert complete("train.defaults.lora", {}) == LoraSettings().to_dict()


def test_lora_section_parses_with_defaults_and_round_trips():
    cfg = from_mapping({"plugin": "ddp", "lora": {"rank": 4, "train_embeddings": "new_rows"}})
    assert cfg.lora == LoraSettings(rank=4, train_embeddings="new_rows")
    assert cfg.lora.alpha == 16.0 and "q_proj" in cfg.lora.target_modules
    assert from_mapping(cfg.to_dict()) == cfg
    assert json.loads(json.dumps(cfg.to_dict())) == cfg.to_dict()  # what a checkpoint's state.json holds
    assert from_mapping({}).lora is None and from_mapping({"lora": None}).lora is None
    assert from_mapping({"lora": {}}).lora == LoraSettings()


def test_dotted_overrides_build_the_lora_section():
    cfg = load_config(None, ["lora.rank=16", "train.lora.train_embeddings=all", "lr=0.001"])
    assert cfg.lora == LoraSettings(rank=16, train_embeddings="all") and cfg.lr == 1e-3


@pytest.mark.parametrize("section, key", [
    ({"lora": {"rank": 0}}, "train.lora.rank"),
    ({"lora": {"rank": 2.5}}, "train.lora.rank"),
    ({"lora": {"dropout": 1.0}}, "train.lora.dropout"),
    ({"lora": {"alpha": "big"}}, "train.lora.alpha"),
    ({"lora": {"train_embeddings": "rows"}}, "train.lora.train_embeddings"),
    ({"lora": {"target_modules": []}}, "train.lora.target_modules"),
    ({"lora": {"lorank": 4}}, "train.lora.lorank"),
    ({"lora": 8}, "train.lora: 8 is not of type"),
    ({"lora": {}, "freeze_non_embeds": True}, "train.freeze_non_embeds"),
    ({"lora": {}, "init": "checkpoint", "init_checkpoint": "x"}, "train.init"),
])
def test_bad_lora_settings_name_the_key(section, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        from_mapping(section)


def test_experiment_config_with_a_lora_stage_validates():
    import yaml

    from cpt.core.config import stage_section, validate
    from cpt.core.schema import REPO_ROOT

    config = yaml.safe_load((REPO_ROOT / "config" / "config.yaml").read_text(encoding="utf-8"))
    config["train"]["stages"]["replay"]["lora"] = {"rank": 4, "train_embeddings": "new_rows"}
    out = validate(config)
    section = stage_section(out, "replay")
    assert from_mapping({k: v for k, v in section.items() if k not in ("init_from", "name")}).lora == LoraSettings(
        rank=4, train_embeddings="new_rows")
    config["train"]["stages"]["replay"]["lora"] = {"rank": 4, "train_embedding": "new_rows"}
    with pytest.raises(ConfigError, match="train.stages.replay.lora.train_embedding"):
        validate(config)


# ------------------------------------------------------------------------------------------------ row split
@pytest.mark.parametrize("tie", [False, True])
def test_split_rows_compute_the_same_logits_bit_for_bit(tie):
    model = tiny(tie=tie)
    ids = torch.randint(0, 96, (2, 12))
    ids[0, :6] = torch.arange(58, 64)  # rows on both sides of the split
    before = model(ids).logits
    names = lora.split_new_rows(model, 60)
    assert names == {"embedding": "model.embed_tokens", "head": "lm_head", "tied": tie}
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    assert (emb.old_rows.shape[0], emb.new_rows.shape[0]) == (60, 36) and emb.num_embeddings == 96
    assert isinstance(head, lora.TiedHead if tie else lora.NewRowsLinear)
    names = [n for n, _ in model.named_parameters()]
    assert ("lm_head.new_rows" in names) != tie and len(names) == len(set(names))  # tied: registered once
    assert len(model.state_dict()) == len(names)  # and saved once (no shared tensors in a checkpoint)
    after = model(ids).logits
    assert torch.equal(before, after)
    after.sum().backward()
    assert emb.old_rows.grad is None and emb.new_rows.grad.abs().sum() > 0
    if not tie:
        assert head.old_rows.grad is None and head.new_rows.grad.abs().sum() > 0


def test_weight_decay_moves_zero_gradient_rows_so_new_rows_splits_them_out():
    """Why new_rows is a split, not a gradient mask: AdamW's decoupled weight decay moves rows whose gradient was
    masked to zero; rows that are not optimizer parameters cannot move."""
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(10, 4))
    masked = torch.optim.AdamW([w], lr=0.1, weight_decay=0.1)
    old = w.detach()[:6].clone()
    for _ in range(3):
        (w ** 2).sum().backward()
        w.grad[:6] = 0  # a gradient mask on rows < 6
        masked.step()
        masked.zero_grad()
    assert not torch.equal(w.detach()[:6], old)  # the mask alone does not protect the old rows
    emb = lora.NewRowsEmbedding(torch.nn.Embedding(10, 4).weight, 6)
    old = emb.old_rows.detach().clone()
    split = torch.optim.AdamW([p for p in emb.parameters() if p.requires_grad], lr=0.1, weight_decay=0.1)
    for _ in range(3):
        emb(torch.arange(10)).pow(2).sum().backward()
        split.step()
        split.zero_grad()
    assert torch.equal(emb.old_rows, old) and emb.old_rows.view(torch.uint8).equal(old.view(torch.uint8))
    assert sum(v.numel() for s in split.state.values() for v in s.values() if v.ndim) == 2 * 4 * 4  # new rows only


def test_base_vocab_comes_from_the_setting_or_config_json():
    from transformers import LlamaConfig

    cfg = LlamaConfig(vocab_size=96)
    assert lora.resolve_base_vocab(LoraSettings(train_embeddings="none"), cfg, 96, "m") is None
    with pytest.raises(TrainError, match="cpt_base_vocab_size.*train.lora.base_vocab_size"):
        lora.resolve_base_vocab(LoraSettings(train_embeddings="new_rows"), cfg, 96, "m")
    cfg.cpt_base_vocab_size = 64
    assert lora.resolve_base_vocab(LoraSettings(train_embeddings="new_rows"), cfg, 96, "m") == 64
    assert lora.resolve_base_vocab(LoraSettings(train_embeddings="new_rows", base_vocab_size=80), cfg, 96, "m") == 80
    with pytest.raises(TrainError, match="base_vocab_size=96"):
        lora.resolve_base_vocab(LoraSettings(train_embeddings="new_rows", base_vocab_size=96), cfg, 96, "m")


# ------------------------------------------------------------------------------------------------ merge, export
def by_hand(base_sd, pm, settings):
    """base + B A alpha/r per adapted layer, from the adapter tensors (independent of peft's merge code)."""
    sd = {k: v.clone() for k, v in base_sd.items()}
    scale = settings.alpha / settings.rank
    params = dict(pm.named_parameters())
    for name in params:
        if name.endswith("lora_A.default.weight"):
            layer = name.removeprefix("base_model.model.").removesuffix(".lora_A.default.weight")
            a, b = params[name].detach(), params[name.replace("lora_A", "lora_B")].detach()
            sd[f"{layer}.weight"] = sd[f"{layer}.weight"] + b @ a * scale
    return sd


@pytest.mark.parametrize("tie", [False, True])
def test_merged_export_is_plain_hf_and_equals_base_plus_delta(tmp_path, tie):
    from transformers import AutoModelForCausalLM

    model = tiny(tie=tie)
    base_sd = {k: v.clone() for k, v in model.state_dict().items()}
    settings = LoraSettings(rank=4, alpha=8.0, target_modules=("q_proj", "v_proj", "down_proj"))
    pm = adapted(model, settings)
    lora.export_merged(pm, model.config, tmp_path, tmp_path / "final", torch.float32)
    files = sorted(p.name for p in (tmp_path / "final").iterdir())
    assert files == ["config.json", "model.safetensors"]
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "final").eval()
    assert type(plain).__name__ == "LlamaForCausalLM" and not hasattr(plain, "peft_config")
    got, want = plain.state_dict(), by_hand(base_sd, pm, settings)
    assert got.keys() == want.keys()
    changed = set()
    for k in want:
        if torch.equal(got[k], base_sd[k]):
            continue
        changed.add(k)
        assert torch.allclose(got[k], want[k], atol=1e-6, rtol=0), k
    assert changed == {f"model.layers.{i}.{m}.weight" for i in (0, 1)
                       for m in ("self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj")}
    if tie:
        assert plain.lm_head.weight is plain.model.embed_tokens.weight
    ids = torch.randint(0, 96, (2, 10))
    assert torch.allclose(plain(ids).logits, pm(input_ids=ids).logits, atol=1e-5)


@pytest.mark.parametrize("tie", [False, True])
def test_adapter_dir_with_trained_new_rows_loads_with_peft_and_matches_final(tmp_path, tie):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = tiny(tie=tie, seed=3)
    base.save_pretrained(tmp_path / "base")
    model = copy.deepcopy(base)
    settings = LoraSettings(rank=2, train_embeddings="new_rows", base_vocab_size=80)
    names = lora.split_new_rows(model, 80)
    pm = adapted(model, settings)
    with torch.no_grad():
        model.get_input_embeddings().new_rows.add_(1.0)  # "trained" new rows
        if not tie:
            model.get_output_embeddings().new_rows.sub_(0.5)
    stage = lora.LoraStage(settings, 80, names, names)
    lora.save_adapter(pm, stage, tmp_path / "adapter")
    lora.export_merged(pm, base.config, tmp_path / "base", tmp_path / "final", torch.float32)
    facts = json.loads((tmp_path / "adapter" / "cpt_lora.json").read_text())
    want = ["base_model.model.model.embed_tokens.weight"] + ([] if tie else ["base_model.model.lm_head.weight"])
    assert facts["embedding_keys"] == sorted(want) and facts["base_vocab_size"] == 80
    final = AutoModelForCausalLM.from_pretrained(tmp_path / "final").eval()
    emb = final.model.embed_tokens.weight
    assert torch.equal(emb[:80], base.model.embed_tokens.weight[:80])  # old rows untouched
    assert torch.equal(emb[80:], base.model.embed_tokens.weight[80:] + 1.0)
    peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tmp_path / "base"),
                                           tmp_path / "adapter").eval()
    ids = torch.randint(0, 96, (2, 10))
    ids[:, 0] = 90  # a new row
    assert torch.allclose(peft_model(input_ids=ids).logits, final(ids).logits, atol=1e-5)


def test_target_modules_that_match_nothing_or_the_embeddings_are_refused():
    from cpt.train.config import TrainConfig
    from cpt.train.plugins import traits

    class NoBooster:  # enable() refuses before it reaches the booster
        def enable_lora(self, *a, **k):
            raise AssertionError("not reached")

    cfg = TrainConfig(plugin="ddp", lora=LoraSettings(target_modules=("q_proj", "lm_head")))
    with pytest.raises(TrainError, match="train.lora.target_modules.*lm_head.*train_embeddings"):
        lora.enable(NoBooster(), tiny(), cfg, traits(cfg), None, "m")
    cfg = TrainConfig(plugin="gemini", lora=LoraSettings())
    with pytest.raises(TrainError, match="train.lora: plugin 'gemini'"):
        lora.check(cfg, traits(cfg))
    cfg = TrainConfig(plugin="3d", precision="bf16", lora=LoraSettings())
    with pytest.raises(TrainError, match="plugin '3d'.*ddp or zero2"):
        lora.check(cfg, traits(cfg))


def test_adapter_init_is_a_function_of_train_seed_not_of_the_ranks_stream():
    """The loop seeds every rank's stream differently (seed + rank); the adapters must not come from that stream:
    ZeRO keeps each rank's own draw as its master shard (tests/distributed: zero2 then equals ddp)."""
    from peft import get_peft_model

    from cpt.train.config import TrainConfig
    from cpt.train.plugins import traits

    class PeftBooster:  # what ColossalAI's TorchDDP / LowLevelZero plugins do in enable_lora without a directory
        def enable_lora(self, model, lora_config):
            return get_peft_model(model, lora_config)

    def adapters(rank_stream_seed, seed):
        cfg = TrainConfig(plugin="zero2", seed=seed, lora=LoraSettings(target_modules=("q_proj", "v_proj")))
        model = tiny()
        torch.manual_seed(rank_stream_seed)  # as loop.py: cfg.seed + rank
        peft_model, _ = lora.enable(PeftBooster(), model, cfg, traits(cfg), model.config, "m")
        after = torch.rand(3)  # the rank's own stream continues as if no adapter had been drawn
        torch.manual_seed(rank_stream_seed)
        assert torch.equal(after, torch.rand(3))
        return {n: p.detach().clone() for n, p in peft_model.named_parameters() if "lora_A" in n}

    rank0, rank1, other_seed = adapters(7, 7), adapters(8, 7), adapters(7, 8)
    assert rank0.keys() == rank1.keys() and len(rank0) == 4
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    assert not any(torch.equal(rank0[k], other_seed[k]) for k in rank0)
