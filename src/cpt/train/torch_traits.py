"""The plugin traits under `train.engine: torch`: how each `train.plugin` maps onto PyTorch's own parallelism.

| train.plugin | torch engine | ColossalAI analogue |
|---|---|---|
| `ddp` | `DistributedDataParallel` (fp32 weights; bf16 by autocast) | TorchDDPPlugin |
| `zero2` | FSDP2 `fully_shard(reshard_after_forward=False)` per decoder layer + root (shard-grad-op) | ZeRO-2 |
| `gemini`, `gemini_auto` | FSDP2 `fully_shard(reshard_after_forward=True)` (full shard) | ZeRO-3 / Gemini |
| `3d` (tp > 1, pp = sp = 1) | DTensor tensor parallel on mesh ("dp", "tp"); FSDP2 on "dp" when world > tp | 3d tp (+ ZeRO) |

bf16 under FSDP2 is `MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32)` over fp32 sharded parameters (the
fp32 master weights are the parameters themselves; the optimizer steps them). Not under the torch engine (refused
with the key to change): `train.precision: fp16` (no loss scaler), `train.lora`, `train.plugin: zero2_cpu`
(optimizer offload), `3d` with `pp` or `sp` > 1 (pipeline / sequence parallelism: use the ColossalAI engine).
Checkpoints are DCP directories, resharded on load: every layout resumes on another world size (`reshard`).
"""

from __future__ import annotations

import contextlib

import torch

from cpt.core.errors import TrainError
from cpt.train.traits import PluginTraits, RankLayout, ResumeTraits

SHARDING = {"ddp": "replicate", "zero2": "shard_grad_op", "gemini": "full_shard", "gemini_auto": "full_shard",
            "3d": "tensor_parallel"}
REFUSED = {
    "zero2_cpu": "train.plugin='zero2_cpu' (optimizer states offloaded to CPU) is not supported by train.engine "
                 "'torch'; use plugin zero2 (FSDP2 shard-grad-op) or engine colossalai",
}


class TorchTraits(PluginTraits):
    """The traits of one `train.plugin` run by the torch engine (cpt.train.engine_torch)."""

    colossal_class = ""
    precisions = ("bf16", "fp32")
    cpu_precisions = ("bf16", "fp32")
    clips_in_plugin = False
    accumulate_without_sync = True
    lazy_init = False
    lora = False
    needs_colossalai = False
    # DCP checkpoints hold every tensor's global shape and offsets: any world size loads them
    resume = ResumeTraits(exact=True, optimizer_across_stages=True, reshard=True)

    def __init__(self, cfg):
        super().__init__(cfg)
        self.name = cfg.plugin
        self.sharding = SHARDING.get(cfg.plugin)

    @property
    def sharded(self) -> bool:
        """FSDP2 owns the parameters (and their precision) on every rank's whole model."""
        return self.sharding in ("shard_grad_op", "full_shard")

    @property
    def tensor_parallel(self) -> bool:
        return self.sharding == "tensor_parallel"

    @property
    def replicated_params(self) -> bool:  # type: ignore[override]
        return self.sharding == "replicate"

    @property
    def rebuilds_grad_buckets(self) -> bool:  # type: ignore[override]
        return self.sharding == "replicate"  # DistributedDataParallel (cpt.train.engine_torch)

    @property
    def owns_precision(self) -> bool:  # type: ignore[override]
        return self.sharded  # FSDP2 casts the parameters (MixedPrecisionPolicy); DDP autocasts in the loop

    @property
    def load_dtype(self) -> torch.dtype:
        return torch.float32  # the parameters are the fp32 master weights

    @property
    def keeps_master_weights(self) -> bool:
        return False  # the DCP checkpoint holds the fp32 parameters themselves

    def autocast(self, device_type: str):
        if not self.sharded and self.cfg.precision == "bf16":
            return torch.autocast(device_type=device_type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def check(self, device_type: str, vocab_size: int | None = None) -> None:
        if self.cfg.plugin in REFUSED:
            raise TrainError(REFUSED[self.cfg.plugin])
        for key in ("pp", "sp"):
            if getattr(self.cfg, key) > 1:
                raise TrainError(f"train.{key}={getattr(self.cfg, key)}: train.engine 'torch' runs plugin 3d as tensor "
                                 f"parallel (tp) x FSDP2 only; set {key}: 1 or use engine colossalai")
        if self.cfg.precision not in self.precisions:
            raise TrainError(f"train.precision={self.cfg.precision!r} is not supported by train.engine 'torch' (no "
                             f"fp16 loss scaler); use bf16 or fp32, or engine colossalai")

    def check_device(self, device_type: str) -> None:
        self.check(device_type)

    def kwargs(self, device_type: str = "cuda") -> dict:
        return {"sharding": self.sharding, "precision": self.cfg.precision, "compile": self.cfg.compile}

    def layout(self, plugin, world: int, rank: int) -> RankLayout:
        tp = self.cfg.tp if self.tensor_parallel else 1
        if world % tp:
            raise TrainError(f"train.tp={tp} must divide the number of processes ({world})")
        # mesh ("dp", "tp"): the tp ranks of one data-parallel group see the same samples and hold the same loss
        return RankLayout(world, world // tp, rank // tp, tp, tp)

    def build_engine(self, device_type: str, vocab_size: int | None = None):
        from cpt.train.engine_torch import TorchEngine

        self.check(device_type, vocab_size)
        return TorchEngine(self, device_type)

    def clip_and_step(self, optimizer):
        raise TrainError("internal: the torch engine clips and steps itself (TorchEngine.clip_and_step)")
