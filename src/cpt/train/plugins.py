"""ColossalAI Booster plugins as *traits*: one object per plugin says everything the training loop treats
differently (ddp, zero2, zero2_cpu, gemini, gemini_auto, 3d).

The loop never tests a plugin's name; it asks the plugin's traits:

| trait | what it decides |
|---|---|
| `colossal_class`, `kwargs()` | which ColossalAI plugin is built and with which constructor arguments |
| `cpu` | None = runs on CPU (gloo); otherwise why it cannot (the error names `train.plugin`) |
| `pipeline` | steps go through `booster.execute_pipeline` (pp > 1) instead of forward + backward |
| `distributed_loss` | the model computes the loss itself (vocab-parallel cross entropy under tensor parallelism) |
| `clips_in_plugin` | gradient clipping is the plugin's `max_norm`; otherwise the loop clips before `step()` |
| `owns_precision`, `param_dtype`, `autocast()`, `booster_mixed_precision()` | who casts parameters and runs
  mixed precision: the plugin (ZeRO, Gemini, 3d), or the loop (ddp: fp32 master weights + bf16 autocast, or
  the Booster's torch AMP for fp16) |
| `accumulate_without_sync` | micro batches before the last of a step run under `booster.no_sync` |
| `replicated_params` | every rank ends with the full weights, so the final weights of all ranks are compared |
| `lora` | `booster.enable_lora` is supported (for a later LoRA stage) |
| `resume` (`ResumeTraits`) | what a checkpoint of this plugin can be resumed as |
| `layout()` | data-parallel size/rank and how many ranks replicate each loss / each sample |

`plugin_spec`, `check_device`, `build_plugin` and `booster_mixed_precision` are the functional entry points
(unit-tested without building anything but the spec).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import ClassVar

import torch

from cpt.errors import TrainError
from cpt.train.config import TrainConfig

INITIAL_LOSS_SCALE = 2 ** 16
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass(frozen=True)
class ResumeTraits:
    """What a checkpoint written under a plugin can be resumed as.

    exact: same world size and parallel layout -> the continuation is bit-identical to an uninterrupted run.
    optimizer_across_stages: `train.init: checkpoint` (a new stage starting from another stage's optimizer state).
    reshard: the checkpoint can be resumed on another world size / parallel layout (elastic resume). False until a
      test proves it for the plugin; the loop refuses a world-size change when it is False.
    """

    exact: bool = True
    optimizer_across_stages: bool = True
    reshard: bool = False


@dataclass(frozen=True)
class Layout:
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
    owns_precision: ClassVar[bool] = True
    clips_in_plugin: ClassVar[bool] = True
    accumulate_without_sync: ClassVar[bool] = False
    replicated_params: ClassVar[bool] = True
    lora: ClassVar[bool] = False
    resume: ClassVar[ResumeTraits] = ResumeTraits()

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

    def autocast(self, device_type: str):
        return contextlib.nullcontext()

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
        if self.cfg.precision == "fp16":
            raise TrainError("train.precision='fp16' needs a GPU (loss scaling with CUDA AMP); use bf16 or fp32 on "
                             "CPU")

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

    def layout(self, plugin, world: int, rank: int) -> Layout:
        return Layout(world, world, rank, 1, 1)

    # ---- optimizer step -----------------------------------------------------------------------------------
    def clip_and_step(self, optimizer):
        """Clip (when the loop owns clipping), step; returns the gradient norm (None when unknown)."""
        grad_norm = None
        if not self.clips_in_plugin:
            grad_norm = optimizer.clip_grad_by_norm(self.cfg.grad_clip if self.cfg.grad_clip > 0 else float("inf"))
        optimizer.step()
        if self.clips_in_plugin:
            grad_norm = optimizer.get_grad_norm() if hasattr(optimizer, "get_grad_norm") else None
        return grad_norm


class DDPTraits(PluginTraits):
    name = "ddp"
    colossal_class = "TorchDDPPlugin"
    owns_precision = False      # fp32 master weights; bf16 by autocast, fp16 by the Booster's torch AMP
    clips_in_plugin = False
    accumulate_without_sync = True
    lora = True

    def autocast(self, device_type: str):
        if self.cfg.precision == "bf16":
            return torch.autocast(device_type=device_type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def booster_mixed_precision(self, device_type: str) -> str | None:
        return "fp16" if self.cfg.precision == "fp16" else None

    def kwargs(self, device_type: str = "cuda") -> dict:
        # frozen parameters are simply absent from DDP's reducer; nothing is unused otherwise
        return {"find_unused_parameters": False, "broadcast_buffers": False}


class Zero2Traits(PluginTraits):
    name = "zero2"
    colossal_class = "LowLevelZeroPlugin"
    lora = True
    offload = False

    def kwargs(self, device_type: str = "cuda") -> dict:
        cfg = self.cfg
        return {
            "stage": 2, "precision": cfg.precision, "initial_scale": INITIAL_LOSS_SCALE,
            "max_norm": float(cfg.grad_clip), "cpu_offload": self.offload,
            # gloo has no overlapping streams; on GPU overlap is the upstream default
            "overlap_communication": device_type != "cpu",
        }


class Zero2CpuTraits(Zero2Traits):
    name = "zero2_cpu"
    offload = True
    cpu = ("train.plugin='zero2_cpu' offloads optimizer states from GPU to CPU; there is no GPU here. Use plugin "
           "zero2 on CPU")


def _gemini_cpu(name: str) -> str:
    return (f"train.plugin={name!r} cannot run on CPU: Gemini needs ColossalAI's CPUAdam/chunk manager CUDA "
            f"kernels; use plugin ddp or zero2 on CPU (gemini works on GPUs)")


class GeminiTraits(PluginTraits):
    name = "gemini"
    colossal_class = "GeminiPlugin"
    precisions = ("bf16", "fp16")
    replicated_params = False   # parameters live in chunks sharded over the ranks
    placement = "static"

    cpu = _gemini_cpu("gemini")

    def check(self, device_type: str, vocab_size: int | None = None) -> None:
        if self.cfg.precision == "fp32":
            raise TrainError("train.precision: gemini supports only bf16/fp16; use plugin zero2 or ddp for fp32")
        super().check(device_type, vocab_size)

    def kwargs(self, device_type: str = "cuda") -> dict:
        cfg = self.cfg
        return {
            "precision": cfg.precision, "initial_scale": INITIAL_LOSS_SCALE, "max_norm": float(cfg.grad_clip),
            "placement_policy": self.placement,
            "enable_gradient_accumulation": cfg.accumulation_steps > 1,
            "enable_flash_attention": cfg.flash_attention,
        }


class GeminiAutoTraits(GeminiTraits):
    name = "gemini_auto"
    placement = "auto"
    cpu = _gemini_cpu("gemini_auto")


class HybridTraits(PluginTraits):
    name = "3d"
    colossal_class = "HybridParallelPlugin"
    precisions = ("bf16", "fp16")
    replicated_params = False   # tp/pp shard the parameters
    lora = True
    cpu = ("train.plugin='3d' (HybridParallelPlugin: tp/pp/sp) is not supported on CPU by this trainer: its "
           "shardformer kernels, sequence parallelism and pipeline p2p target NCCL GPUs; use plugin ddp or zero2 on "
           "CPU")

    @property
    def pipeline(self) -> bool:
        return self.cfg.pp > 1

    @property
    def distributed_loss(self) -> bool:
        return True  # vocab-parallel logits: the model's own (distributed) cross entropy

    def check(self, device_type: str, vocab_size: int | None = None) -> None:
        cfg = self.cfg
        if cfg.precision == "fp32":
            raise TrainError("train.precision: the 3d plugin supports only bf16/fp16")
        if cfg.tp > 1 and vocab_size is not None and vocab_size % (64 * cfg.tp) != 0:
            raise TrainError(
                f"train.tp={cfg.tp}: the vocabulary size {vocab_size} must be divisible by 64 x tp = {64 * cfg.tp} "
                f"(tensor-parallel embedding shards; optimizer checkpoints fail otherwise); pad the vocabulary "
                f"when building the model or lower tp")
        if cfg.sp > 1 and cfg.sp_mode in ("split_gather", "ring") and (cfg.tp < 2 or cfg.sp != cfg.tp):
            raise TrainError(f"train.sp: sp_mode {cfg.sp_mode!r} runs inside the tp group (needs tp >= 2); set sp "
                             f"equal to tp ({cfg.tp}) or use sp_mode all_to_all / ring_attn")
        super().check(device_type, vocab_size)

    def kwargs(self, device_type: str = "cuda") -> dict:
        cfg = self.cfg
        kwargs = {
            "tp_size": cfg.tp, "pp_size": cfg.pp, "sp_size": cfg.sp if cfg.sp_mode in ("all_to_all", "ring_attn")
            else 1, "zero_stage": cfg.zero_stage, "precision": cfg.precision,
            "initial_scale": INITIAL_LOSS_SCALE, "max_norm": float(cfg.grad_clip),
            "enable_sequence_parallelism": cfg.sp > 1,
            "sequence_parallelism_mode": cfg.sp_mode if cfg.sp > 1 else None,
            "enable_flash_attention": cfg.flash_attention, "enable_fused_normalization": device_type != "cpu",
            "make_vocab_size_divisible_by": 64,
        }
        if cfg.pp > 1:
            kwargs["microbatch_size"] = cfg.pp_microbatch_size
        return kwargs

    def layout(self, plugin, world: int, rank: int) -> Layout:
        import torch.distributed as dist

        dp_size = getattr(plugin, "dp_size", world)
        dp_rank = dist.get_rank(plugin.dp_group)
        replicas = world // dp_size
        return Layout(world, dp_size, dp_rank, replicas, replicas)


TRAITS: dict[str, type[PluginTraits]] = {t.name: t for t in (DDPTraits, Zero2Traits, Zero2CpuTraits, GeminiTraits,
                                                              GeminiAutoTraits, HybridTraits)}
CPU_PLUGINS = tuple(name for name, t in TRAITS.items() if t.cpu is None)


def traits(cfg: TrainConfig) -> PluginTraits:
    try:
        return TRAITS[cfg.plugin](cfg)
    except KeyError:
        raise TrainError(f"train.plugin: unknown plugin {cfg.plugin!r}; one of {sorted(TRAITS)}") from None


def plugin_spec(cfg: TrainConfig, device_type: str = "cuda", vocab_size: int | None = None) -> tuple[str, dict]:
    """(ColossalAI plugin class name, constructor arguments) for this config."""
    return traits(cfg).spec(device_type, vocab_size)


def check_device(cfg: TrainConfig, device_type: str) -> None:
    traits(cfg).check_device(device_type)


def build_plugin(cfg: TrainConfig, device_type: str, vocab_size: int | None = None):
    return traits(cfg).build(device_type, vocab_size)


def booster_mixed_precision(cfg: TrainConfig, device_type: str) -> str | None:
    return traits(cfg).booster_mixed_precision(device_type)
