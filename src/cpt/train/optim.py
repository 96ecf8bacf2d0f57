"""Optimiser, learning-rate schedule, freezing and NEFTune."""

from __future__ import annotations

import math

import torch
from torch import nn

from cpt.core.errors import TrainError
from cpt.train.config import TrainConfig

EMBED_NAMES = ("embed_tokens", "lm_head")


def is_no_decay(name: str, param: torch.Tensor) -> bool:
    """Norm weights and biases (1-D tensors or names with 'norm' / '.bias')."""
    return param.ndim < 2 or name.endswith(".bias") or "norm" in name.lower()


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if not cfg.decay_norms_and_biases and is_no_decay(name, p):
            no_decay.append(p)
        else:
            decay.append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    if not decay and not no_decay:
        raise TrainError("no trainable parameters (check train.freeze_non_embeds and the model)")
    return [g for g in groups if g["params"]]


def freeze_non_embeddings(model: nn.Module) -> list[str]:
    """requires_grad=False on every parameter except the input embeddings and the LM head; returns trained names."""
    trained = []
    for name, p in model.named_parameters():
        keep = any(part in name.split(".") for part in EMBED_NAMES)
        p.requires_grad_(keep)
        if keep:
            trained.append(name)
    if not trained:
        raise TrainError("train.freeze_non_embeds: the model has no embed_tokens/lm_head parameters")
    return trained


def build_optimizer(model: nn.Module, cfg: TrainConfig, device_type: str) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg)
    kwargs = dict(lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)
    if device_type == "cuda" and cfg.engine == "colossalai":
        from colossalai.nn.optimizer import HybridAdam

        return HybridAdam(groups, adamw_mode=True, **kwargs)
    return torch.optim.AdamW(groups, **kwargs)


def warmup_steps_for(cfg: TrainConfig, total_steps: int) -> int:
    if cfg.warmup_steps is not None:
        return min(cfg.warmup_steps, total_steps)
    return int(math.ceil(cfg.warmup_ratio * total_steps))


def build_scheduler(optimizer, cfg: TrainConfig, total_steps: int):
    """Linear warmup, then cosine decay to min_lr_ratio x lr (transformers' library scheduler)."""
    from transformers.optimization import get_cosine_with_min_lr_schedule_with_warmup

    return get_cosine_with_min_lr_schedule_with_warmup(
        optimizer, num_warmup_steps=warmup_steps_for(cfg, total_steps), num_training_steps=total_steps,
        min_lr_rate=cfg.min_lr_ratio,
    )


class NEFTune:
    """Uniform noise on input embeddings during training (Jain et al. 2023): U(-1, 1) * alpha / sqrt(L * d),
    L = real (unpadded) length of each sequence, d = hidden size. Never active in eval mode."""

    def __init__(self, alpha: float):
        self.alpha = float(alpha)
        self.lengths: torch.Tensor | None = None  # set per micro batch by the loop
        self.handle = None

    def attach(self, embedding: nn.Module) -> "NEFTune":
        self.handle = embedding.register_forward_hook(self._hook)
        return self

    def detach(self):
        if self.handle is not None:
            self.handle.remove()
            self.handle = None

    def _hook(self, module, inputs, output):
        if not module.training or self.alpha <= 0:
            return output
        b, seq, d = output.shape
        if self.lengths is not None and len(self.lengths) == b:
            L = self.lengths.to(output.device, torch.float32).clamp(min=1)
        else:
            L = torch.full((b,), float(seq), device=output.device)
        scale = (self.alpha / torch.sqrt(L * d)).to(output.dtype).view(b, 1, 1)
        noise = torch.empty_like(output).uniform_(-1, 1)
        return output + noise * scale
