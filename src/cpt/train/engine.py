"""The training engine: what the Trainer (cpt.train.trainer) asks of the library that runs the parallel model.

`train.engine` picks one implementation per stage:

- `colossalai` (default): `ColossalEngine`, ColossalAI's Booster and its plugins (cpt.train.plugins): ddp, zero2,
  zero2_cpu, gemini, gemini_auto, 3d.
- `torch`: `cpt.train.engine_torch.TorchEngine`, PyTorch's own DDP, FSDP2 `fully_shard` and DCP
  (cpt.train.torch_traits maps the plugins: ddp = DDP, zero2 = FSDP2 shard-grad-op, gemini = FSDP2 full shard).

Both implement `Engine`; the plugin traits (cpt.train.traits) build the engine (`build_engine`), so the Trainer
never tests an engine's or a plugin's name. The checkpoint functions (cpt.train.checkpoint) call the engine's
`save_model` / `save_optimizer` / `load_model` / `load_optimizer` / `export_model` (the Booster's checkpoint API is
the seam; the torch engine writes DCP directories there).
"""

from __future__ import annotations

import contextlib
from typing import Any


class Engine:
    """The interface: wrap, forward-backward, accumulation without sync, clip + step, save / load, export."""

    name = "engine"

    # ---- wrap ------------------------------------------------------------------------------------------------
    def wrap_model(self, model):
        """The model ready for its optimizer to be built (the torch engine shards it here; the Booster later)."""
        return model

    def wrap(self, model, optimizer, scheduler):
        """(model, optimizer, scheduler) ready to train (wrapped, sharded, cast)."""
        raise NotImplementedError

    def unwrap(self, model):
        """The Hugging Face module inside a wrapped model."""
        return model

    def attention_that_ran(self, model) -> str:
        return str(getattr(self.unwrap(model).config, "_attn_implementation", "unknown"))

    # ---- step ------------------------------------------------------------------------------------------------
    def no_sync(self, model, optimizer):
        """Context for a micro batch whose gradients are accumulated without reduction."""
        return contextlib.nullcontext()

    @property
    def supports_no_sync(self) -> bool:
        return False

    def backward(self, loss, optimizer) -> None:
        raise NotImplementedError

    def execute_pipeline(self, data_iter, model, criterion, optimizer) -> Any:
        raise NotImplementedError(f"engine {self.name} has no pipeline schedule")

    def clip_and_step(self, optimizer) -> float | None:
        """Clip the gradients (train.grad_clip), step; returns the gradient norm before clipping."""
        raise NotImplementedError

    # ---- checkpoints (collective) ---------------------------------------------------------------------------
    def save_model(self, model, path: str, shard: bool = True, use_safetensors: bool = True) -> None:
        raise NotImplementedError

    def save_optimizer(self, optimizer, path: str, shard: bool = True) -> None:
        raise NotImplementedError

    def load_model(self, model, path: str) -> None:
        raise NotImplementedError

    def load_optimizer(self, optimizer, path: str) -> None:
        raise NotImplementedError

    def export_model(self, model, path: str) -> None:
        """Collective: the model's full weights as Hugging Face safetensors shards (+ index) into `path`."""
        raise NotImplementedError

    def facts(self) -> dict:
        """What run.json's trainer key records about the engine."""
        return {"engine": self.name}


class ColossalEngine(Engine):
    """ColossalAI's Booster (today's behaviour): the plugin does the wrapping, precision, clipping (ZeRO, 3d) and
    checkpoint formats."""

    name = "colossalai"

    def __init__(self, traits, plugin, mixed_precision: str | None):
        from colossalai.booster import Booster

        self.traits = traits
        self.plugin = plugin
        self.booster = Booster(plugin=plugin, mixed_precision=mixed_precision)

    def wrap(self, model, optimizer, scheduler):
        model, optimizer, _, _, scheduler = self.booster.boost(model, optimizer, lr_scheduler=scheduler)
        return model, optimizer, scheduler

    def unwrap(self, model):
        return model.unwrap(unwrap_peft=False) if hasattr(model, "unwrap") else model

    def attention_that_ran(self, model) -> str:
        """shardformer's ColoAttention when the 3d plugin enables flash attention (it replaces the HF attention),
        else the HF implementation the model was built with."""
        shard_config = getattr(self.plugin, "shard_config", None)
        if shard_config is not None and getattr(shard_config, "enable_flash_attention", False):
            return "colossalai_coloattention"
        return super().attention_that_ran(model)

    @property
    def supports_no_sync(self) -> bool:
        return bool(self.plugin.support_no_sync())

    def no_sync(self, model, optimizer):
        return self.booster.no_sync(model, optimizer)

    def backward(self, loss, optimizer) -> None:
        self.booster.backward(loss, optimizer)

    def execute_pipeline(self, data_iter, model, criterion, optimizer):
        return self.booster.execute_pipeline(data_iter, model, criterion, optimizer, return_loss=False)

    def clip_and_step(self, optimizer):
        return self.traits.clip_and_step(optimizer)

    def save_model(self, model, path, shard=True, use_safetensors=True):
        self.booster.save_model(model, path, shard=shard, use_safetensors=use_safetensors)

    def save_optimizer(self, optimizer, path, shard=True):
        self.booster.save_optimizer(optimizer, path, shard=shard)

    def load_model(self, model, path):
        self.booster.load_model(model, path)

    def load_optimizer(self, optimizer, path):
        self.booster.load_optimizer(optimizer, path)

    def export_model(self, model, path):
        self.booster.save_model(model, path, shard=True, use_safetensors=True, size_per_shard=4096)

    def enable_lora(self, model, **kwargs):
        return self.booster.enable_lora(model, **kwargs)
