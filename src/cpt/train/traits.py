"""The base of the ColossalAI plugin traits (cpt.train.plugins): what a plugin says to the training loop, how the
ranks divide the work (RankLayout), what its checkpoints can be resumed as, and the fp32 master weights the loop
keeps for mixed precision."""


from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from cpt.core.errors import TrainError
from cpt.train.config import TrainConfig

INITIAL_LOSS_SCALE = 2 ** 16
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass(frozen=True)
class ResumeTraits:
    """What a checkpoint written under a plugin can be resumed as.

    exact: same world size and parallel layout -> the continuation is bit-identical to an uninterrupted run
      (tests/distributed: ddp fp32, zero2 bf16, 3d tp x pp x sp fp32; bf16/fp16 need the fp32 master weights,
      which the loop saves next to the booster's checkpoint, see `keeps_master_weights`).
    optimizer_across_stages: `train.init: checkpoint` (a new stage starting from another stage's optimizer state).
    reshard: the checkpoint can be resumed on another world size / parallel layout (elastic resume). False until a
      test proves it for the plugin; the loop refuses a world-size change when it is False.
    """

    exact: bool = True
    optimizer_across_stages: bool = True
    reshard: bool = False


@dataclass(frozen=True)
class RankLayout:
    """How the ranks of one run divide the work."""

    world: int
    dp_size: int           # data-parallel replicas (each sees different samples)
    dp_rank: int
    data_replicas: int     # ranks that hold the same samples (tp x pp x sp): token counts are divided by it
    loss_replicas: int     # ranks that each hold the same (full) loss value: the logged loss is divided by it


class PluginTraits:
    """Base: the traits of a plugin, bound to one stage's TrainConfig."""

    name: ClassVar[str]
    colossal_class: ClassVar[str]
    cpu: ClassVar[str | None] = None
    precisions: ClassVar[tuple[str, ...]] = ("bf16", "fp16", "fp32")
    cpu_precisions: ClassVar[tuple[str, ...]] = ("bf16", "fp32")   # fp16 loss scaling that works on CPU
    owns_precision: ClassVar[bool] = True
    clips_in_plugin: ClassVar[bool] = True
    accumulate_without_sync: ClassVar[bool] = False
    replicated_params: ClassVar[bool] = True
    lazy_init: ClassVar[bool] = False   # build under LazyInitContext; the plugin materialises only its shard
    lora: ClassVar[bool] = False
    needs_colossalai: ClassVar[bool] = True  # the process group comes from colossalai.launch_from_torch
    resume: ClassVar[ResumeTraits] = ResumeTraits()
    # torch's DistributedDataParallel: gradient buckets laid out anew after a process's first backward (the
    # trainer replays that backward on a resume, cpt.train.trainer.Trainer.settle_grad_buckets)
    rebuilds_grad_buckets: ClassVar[bool] = False

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg

    # ---- step ---------------------------------------------------------------------------------------------
    @property
    def pipeline(self) -> bool:
        return False

    @property
    def distributed_loss(self) -> bool:
        return False

    # ---- precision ----------------------------------------------------------------------------------------
    @property
    def train_dtype(self) -> torch.dtype:
        return DTYPES[self.cfg.precision]

    @property
    def param_dtype(self) -> torch.dtype:
        """dtype of the parameters the model computes with (also the dtype of additive attention masks)."""
        return self.train_dtype if self.owns_precision else torch.float32

    @property
    def load_dtype(self) -> torch.dtype:
        """dtype the checkpoint is loaded in: the compute dtype (ZeRO/3d keep fp32 master copies of their own
        shard only, made from these), so no rank holds a full fp32 copy it does not train with."""
        return self.param_dtype

    def autocast(self, device_type: str):
        return contextlib.nullcontext()

    @property
    def pad_to_multiple_of(self) -> int:
        """Micro batches are right-padded to a multiple of this length (sequence parallelism splits them)."""
        return 1

    def booster_mixed_precision(self, device_type: str) -> str | None:
        return None

    # ---- construction -------------------------------------------------------------------------------------
    def check(self, device_type: str, vocab_size: int | None = None) -> None:
        """Refuse settings this plugin cannot run (with the key to change)."""
        if self.cfg.precision not in self.precisions:
            raise TrainError(f"train.precision: plugin {self.name} supports {list(self.precisions)}, not "
                             f"{self.cfg.precision!r}")

    def check_device(self, device_type: str) -> None:
        if device_type != "cpu":
            return
        if self.cpu is not None:
            raise TrainError(self.cpu)
        if self.cfg.precision not in self.cpu_precisions:
            raise TrainError(f"train.precision={self.cfg.precision!r} with plugin {self.name} needs a GPU (loss "
                             f"scaling with CUDA AMP); use {' or '.join(self.cpu_precisions)} on CPU")

    def kwargs(self, device_type: str = "cuda") -> dict:
        raise NotImplementedError

    def spec(self, device_type: str = "cuda", vocab_size: int | None = None) -> tuple[str, dict]:
        self.check(device_type, vocab_size)
        return self.colossal_class, self.kwargs(device_type)

    def build(self, device_type: str, vocab_size: int | None = None):
        self.check_device(device_type)
        name, kwargs = self.spec(device_type, vocab_size)
        import colossalai.booster.plugin as plugins

        return getattr(plugins, name)(**kwargs)

    def build_engine(self, device_type: str, vocab_size: int | None = None):
        """The engine that runs this plugin (cpt.train.engine): ColossalAI's Booster around the built plugin."""
        from cpt.train.engine import ColossalEngine

        return ColossalEngine(self, self.build(device_type, vocab_size), self.booster_mixed_precision(device_type))

    def layout(self, plugin, world: int, rank: int) -> RankLayout:
        return RankLayout(world, world, rank, 1, 1)

    # ---- what a checkpoint holds beyond booster.save_model/save_optimizer -----------------------------------
    @property
    def keeps_master_weights(self) -> bool:
        """The optimizer keeps fp32 master copies of bf16/fp16 working weights (ZeRO, 3d's AMP): booster checkpoints
        hold only the working weights and rebuild the masters from them on load, so an exact resume also needs the
        masters (each rank's own shard)."""
        return self.owns_precision and self.cfg.precision in ("bf16", "fp16")

    def save_master_weights(self, model, optimizer, directory: Path, rank: int) -> None:
        if not self.keeps_master_weights:
            return
        from safetensors.torch import save_file

        masters = master_weights(model, optimizer)
        if masters:
            save_file({str(i): t.detach().contiguous().cpu() for i, t in enumerate(masters)},
                      str(Path(directory) / MASTER_FILE.format(rank=rank)))

    def load_master_weights(self, model, optimizer, directory: Path, rank: int) -> str | None:
        """Restore this rank's master weights; returns why they were re-derived from the working weights instead
        (None when restored or not kept)."""
        if not self.keeps_master_weights:
            return None
        masters = master_weights(model, optimizer)
        if not masters:
            return None
        f = Path(directory) / MASTER_FILE.format(rank=rank)
        if not f.is_file():
            return f"{f.name} missing: fp32 master weights re-derived from the saved {self.cfg.precision} weights"
        from safetensors.torch import load_file

        saved = load_file(str(f))
        if len(saved) != len(masters) or any(saved[str(i)].shape != m.shape for i, m in enumerate(masters)):
            return (f"{f.name} does not fit this layout: fp32 master weights re-derived from the saved "
                    f"{self.cfg.precision} weights")
        with torch.no_grad():
            for i, m in enumerate(masters):
                m.copy_(saved[str(i)].to(m.device, m.dtype))
        return None

    # ---- optimizer step -----------------------------------------------------------------------------------
    def clip_and_step(self, optimizer):
        """Clip (when the loop owns clipping), step; returns the gradient norm (None when unknown)."""
        grad_norm = None
        if not self.clips_in_plugin:
            grad_norm = optimizer.clip_grad_by_norm(self.cfg.grad_clip if self.cfg.grad_clip > 0 else float("inf"))
        scale = loss_scale(optimizer)  # read before step(): the scaler may grow or back off in it
        optimizer.step()
        if self.clips_in_plugin:
            grad_norm = optimizer.get_grad_norm() if hasattr(optimizer, "get_grad_norm") else None
            if grad_norm is not None:
                # ColossalAI's ZeRO/AMP optimizers report the norm of the loss-scaled gradients (fp16)
                grad_norm = float(grad_norm) / scale
        return grad_norm


MASTER_FILE = "master-rank{rank:05d}.safetensors"


def master_weights(model, optimizer) -> list[torch.Tensor]:
    """This rank's fp32 master tensors, in model.parameters() order ([] when the optimizer keeps none):
    LowLevelZero/ZeRO optimizers map id(working param) -> master shard, ColossalAI's mixed-precision (AMP)
    optimizers map the working parameter -> master."""
    by_id = getattr(optimizer, "working_to_master_param", None)
    by_param = getattr(optimizer, "working_to_master_map", None)
    out = []
    for p in model.parameters():
        if by_id is not None and id(p) in by_id:
            out.append(by_id[id(p)])
        elif by_param is not None and p in by_param:
            out.append(by_param[p])
    return out


def loss_scale(optimizer) -> float:
    """The fp16 loss scale a ColossalAI optimizer's gradients carry (1.0 for bf16/fp32)."""
    for attr in ("mixed_precision_mixin", "mixed_precision"):
        mixin = getattr(optimizer, attr, None)
        if mixin is not None and hasattr(mixin, "loss_scale"):  # fp16 mixin (bf16's has none)
            return float(mixin.loss_scale)
    return 1.0
