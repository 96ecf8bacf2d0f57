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
| `rebuilds_grad_buckets` | torch DDP: a resumed process replays one backward before its first step, so its gradient
  buckets (and the all-reduce's summation order) are the uninterrupted run's |
| `layout()` | data-parallel size/rank and how many ranks replicate each loss / each sample |
| `build_engine()` | the engine that runs it (cpt.train.engine): the Booster here; `train.engine: torch` maps every
  plugin onto PyTorch's own parallelism instead (cpt.train.torch_traits) |

`plugin_spec`, `check_device`, `build_plugin` and `booster_mixed_precision` are the functional entry points
(unit-tested without building anything but the spec).
"""

from __future__ import annotations

import contextlib

import torch

from cpt.core.errors import TrainError
from cpt.train.config import TrainConfig
from cpt.train.traits import (  # noqa: F401
    DTYPES,
    INITIAL_LOSS_SCALE,
    PluginTraits,
    RankLayout,
    ResumeTraits,
    loss_scale,
    master_weights,
)


class DDPTraits(PluginTraits):
    name = "ddp"
    colossal_class = "TorchDDPPlugin"
    owns_precision = False      # fp32 master weights; bf16 by autocast, fp16 by the Booster's torch AMP
    clips_in_plugin = False
    accumulate_without_sync = True
    lora = True
    rebuilds_grad_buckets = True  # TorchDDPPlugin is torch's DistributedDataParallel
    # the optimizer checkpoint holds the full (replicated) state: any world size loads it
    # (tests/distributed/test_elastic_resume.py)
    resume = ResumeTraits(reshard=True)

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
    cpu_precisions = ("bf16", "fp16", "fp32")
    lora = True
    offload = False
    # the checkpoint holds gathered (unsharded) optimizer states; loading splits them for the current world
    # (LowLevelZeroCheckpointIO.load_sharded_optimizer; tests/distributed/test_elastic_resume.py)
    resume = ResumeTraits(reshard=True)

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
    lazy_init = True
    resume = ResumeTraits(exact=False)  # its chunked checkpoints were never run here (GPU only): unverified
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
    cpu_precisions = ("bf16", "fp16", "fp32")
    replicated_params = False   # tp/pp shard the parameters
    lazy_init = True
    lora = True
    @property
    def pipeline(self) -> bool:
        return self.cfg.pp > 1

    @property
    def accumulate_without_sync(self) -> bool:  # type: ignore[override]
        # ColossalAI 0.5.0 all-reduces the accumulated sp-partial (norm) gradients after every backward / pipeline
        # call unless no_sync is active: with accumulation that double-counts earlier micro batches. no_sync is
        # refused by upstream with ZeRO-2.
        return self.cfg.zero_stage < 2

    @property
    def distributed_loss(self) -> bool:
        return True  # vocab-parallel logits: the model's own (distributed) cross entropy

    @property
    def pad_to_multiple_of(self) -> int:
        cfg = self.cfg
        if cfg.sp <= 1:
            return 1
        return cfg.tp if cfg.sp_mode in ("split_gather", "ring") else cfg.sp

    def check(self, device_type: str, vocab_size: int | None = None) -> None:
        cfg = self.cfg
        if cfg.precision == "fp32" and cfg.zero_stage > 0:
            raise TrainError("train.precision: the 3d plugin with zero_stage > 0 supports only bf16/fp16 (fp32 "
                             "needs zero_stage 0)")
        if cfg.tp > 1 and vocab_size is not None and vocab_size % (64 * cfg.tp) != 0:
            raise TrainError(
                f"train.tp={cfg.tp}: the vocabulary size {vocab_size} must be divisible by 64 x tp = {64 * cfg.tp} "
                f"(tensor-parallel embedding shards; optimizer checkpoints fail otherwise); pad the vocabulary "
                f"when building the model or lower tp")
        if cfg.zero_stage == 2 and cfg.accumulation_steps > 1:
            raise TrainError(
                "train.accumulation_steps > 1 with plugin 3d and zero_stage 2 is refused: ColossalAI 0.5.0 refuses "
                "no_sync with ZeRO-2 and its accumulated gradient norm (used for clipping) disagrees with DDP (1.354 vs "
                "0.999 on a tiny LLaMA); use zero_stage 1 (or plugin zero2) with accumulation, or accumulation_steps 1")
        if cfg.neftune_alpha > 0:
            raise TrainError(
                "train.neftune_alpha: NEFTune is not supported with plugin 3d: shardformer replaces the embedding "
                "module (the noise hook would be lost), tensor-parallel ranks would draw different noise for the "
                "same tokens, and pipeline micro-batches do not carry the sequence lengths the noise is scaled by; "
                "train SFT with NEFTune on plugin zero2 or ddp, or set neftune_alpha: 0")
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
            "enable_flash_attention": cfg.flash_attention and device_type != "cpu",
            "enable_fused_normalization": device_type != "cpu",
            "make_vocab_size_divisible_by": 64,
            # gloo has no overlapping streams (ZeRO inside 3d); on GPU overlap is the upstream default
            "overlap_communication": device_type != "cpu",
        }
        if cfg.pp > 1:
            kwargs["microbatch_size"] = cfg.pp_microbatch_size
            # sequence lengths differ from step to step: the p2p shape cache would reuse the first step's shapes
            kwargs["enable_metadata_cache"] = False
        return kwargs

    def check_device(self, device_type: str) -> None:
        super().check_device(device_type)
        cfg = self.cfg
        if device_type == "cpu" and cfg.sp > 1 and cfg.sp_mode == "ring_attn":
            raise TrainError("train.sp_mode='ring_attn' needs flash attention kernels on a CUDA GPU (ColossalAI forces "
                             "flash attention for it); on CPU use sp_mode split_gather (sp = tp) or all_to_all")
        if device_type == "cpu" and cfg.sp > 1 and cfg.sp_mode == "ring":
            raise TrainError("train.sp_mode='ring' is refused on CPU: with ColossalAI 0.5.0 on gloo its gradients "
                             "disagree with DDP (grad norm 1.187 vs 1.180 at step 1 of a tiny LLaMA, losses drift "
                             "apart); use sp_mode split_gather (same sharding) or all_to_all")

    def layout(self, plugin, world: int, rank: int) -> RankLayout:
        import torch.distributed as dist

        # the pure data-parallel axis: plugin.dp_size also counts all_to_all/ring_attn sp ranks (ZeRO and gradient
        # averaging run over dp x sp), but sp ranks share their samples
        return self.layout_of(world, dist.get_world_size(plugin.dp_group), dist.get_rank(plugin.dp_group))

    def layout_of(self, world: int, dp_size: int, dp_rank: int) -> RankLayout:
        replicas = world // dp_size
        # with pp only the last stage computes the loss; each of its tp (x sp) ranks holds the same value
        return RankLayout(world, dp_size, dp_rank, replicas, replicas // self.cfg.pp)


TRAITS: dict[str, type[PluginTraits]] = {t.name: t for t in (DDPTraits, Zero2Traits, Zero2CpuTraits, GeminiTraits,
                                                              GeminiAutoTraits, HybridTraits)}
CPU_PLUGINS = tuple(name for name, t in TRAITS.items() if t.cpu is None)


def traits(cfg: TrainConfig) -> PluginTraits:
    """The traits of cfg.plugin under cfg.engine (torch: cpt.train.torch_traits)."""
    if cfg.engine == "torch":
        from cpt.train.torch_traits import TorchTraits

        if cfg.plugin not in TRAITS:
            raise TrainError(f"train.plugin: unknown plugin {cfg.plugin!r}; one of {sorted(TRAITS)}")
        return TorchTraits(cfg)
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
