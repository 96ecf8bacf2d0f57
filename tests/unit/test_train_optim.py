from __future__ import annotations

import math

import pytest
import torch

from cpt.train.config import from_mapping
from cpt.train.optim import NEFTune, build_optimizer, build_scheduler, freeze_non_embeddings, param_groups


def tiny():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=2))


def test_warmup_then_cosine_to_floor():
    cfg = from_mapping({"lr": 1e-3, "warmup_steps": 10, "min_lr_ratio": 0.1})
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched = build_scheduler(opt, cfg, total_steps=110)
    lrs = []
    for _ in range(110):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs[0] == 0.0 and lrs[5] == pytest.approx(5e-4) and lrs[10] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))           # monotone decay after warmup
    assert sched.get_last_lr()[0] == pytest.approx(1e-4)             # floor = 0.1 x lr at the end
    assert lrs[60] == pytest.approx(1e-4 + 0.5 * 9e-4 * (1 + math.cos(math.pi * 0.5)))


def test_no_decay_on_norms_and_biases_unless_configured():
    model = tiny()
    groups = param_groups(model, from_mapping({"weight_decay": 0.1}))
    no_decay = {id(p) for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    names = {n for n, p in model.named_parameters() if id(p) in no_decay}
    assert names and all("norm" in n for n in names)
    groups = param_groups(model, from_mapping({"weight_decay": 0.1, "decay_norms_and_biases": True}))
    assert len(groups) == 1
    opt = build_optimizer(model, from_mapping({}), "cpu")
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["betas"] == (0.9, 0.95) and opt.defaults["eps"] == 1e-8


def test_freeze_non_embeddings():
    model = tiny()
    trained = freeze_non_embeddings(model)
    assert sorted(trained) == ["lm_head.weight", "model.embed_tokens.weight"]
    assert [n for n, p in model.named_parameters() if p.requires_grad] == trained


def test_neftune_scale_and_training_only():
    emb = torch.nn.Embedding(10, 64)
    torch.nn.init.zeros_(emb.weight)
    hook = NEFTune(alpha=5.0).attach(emb)
    ids = torch.zeros((2, 100), dtype=torch.long)
    hook.lengths = torch.tensor([100, 25])
    out = emb(ids)
    bound = torch.tensor([5 / math.sqrt(100 * 64), 5 / math.sqrt(25 * 64)])
    mx = out.abs().amax(dim=(1, 2))
    assert torch.all(mx <= bound + 1e-7) and torch.all(mx > 0.9 * bound)
    emb.eval()
    assert emb(ids).abs().max() == 0
    hook.detach()
    emb.train()
    assert emb(ids).abs().max() == 0
