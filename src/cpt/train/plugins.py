"""ColossalAI Booster plugins by name: ddp, zero2, zero2_cpu, gemini, gemini_auto, 3d.

`plugin_spec` is the documented mapping (class name + constructor arguments), unit-tested without building
anything; `build_plugin` checks the hardware and constructs it.
"""

from __future__ import annotations

from cpt.errors import TrainError
from cpt.train.config import TrainConfig

INITIAL_LOSS_SCALE = 2 ** 16
CPU_PLUGINS = ("ddp", "zero2")


def plugin_spec(cfg: TrainConfig, device_type: str = "cuda", vocab_size: int | None = None) -> tuple[str, dict]:
    on_cpu = device_type == "cpu"
    clip = float(cfg.grad_clip)
    if cfg.plugin == "ddp":
        # frozen parameters are simply absent from DDP's reducer; nothing is unused otherwise
        return "TorchDDPPlugin", {"find_unused_parameters": False, "broadcast_buffers": False}
    if cfg.plugin in ("zero2", "zero2_cpu"):
        return "LowLevelZeroPlugin", {
            "stage": 2, "precision": cfg.precision, "initial_scale": INITIAL_LOSS_SCALE, "max_norm": clip,
            "cpu_offload": cfg.plugin == "zero2_cpu",
            # gloo has no overlapping streams; on GPU overlap is the upstream default
            "overlap_communication": not on_cpu,
        }
    if cfg.plugin in ("gemini", "gemini_auto"):
        if cfg.precision == "fp32":
            raise TrainError("train.precision: gemini supports only bf16/fp16; use plugin zero2 or ddp for fp32")
        return "GeminiPlugin", {
            "precision": cfg.precision, "initial_scale": INITIAL_LOSS_SCALE, "max_norm": clip,
            "placement_policy": "auto" if cfg.plugin == "gemini_auto" else "static",
            "enable_gradient_accumulation": cfg.accumulation_steps > 1,
            "enable_flash_attention": cfg.flash_attention,
        }
    if cfg.plugin == "3d":
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
        kwargs = {
            "tp_size": cfg.tp, "pp_size": cfg.pp, "sp_size": cfg.sp if cfg.sp_mode in ("all_to_all", "ring_attn")
            else 1, "zero_stage": cfg.zero_stage, "precision": cfg.precision,
            "initial_scale": INITIAL_LOSS_SCALE, "max_norm": clip,
            "enable_sequence_parallelism": cfg.sp > 1,
            "sequence_parallelism_mode": cfg.sp_mode if cfg.sp > 1 else None,
            "enable_flash_attention": cfg.flash_attention, "enable_fused_normalization": not on_cpu,
            "make_vocab_size_divisible_by": 64,
        }
        if cfg.pp > 1:
            kwargs["microbatch_size"] = cfg.pp_microbatch_size
        return "HybridParallelPlugin", kwargs
    raise TrainError(f"train.plugin: unknown plugin {cfg.plugin!r}")


def check_device(cfg: TrainConfig, device_type: str) -> None:
    if device_type != "cpu":
        return
    if cfg.plugin in ("gemini", "gemini_auto"):
        raise TrainError(
            f"train.plugin={cfg.plugin!r} cannot run on CPU: Gemini needs ColossalAI's CPUAdam/chunk manager CUDA "
            f"kernels; use plugin ddp or zero2 on CPU (gemini works on GPUs)")
    if cfg.plugin == "zero2_cpu":
        raise TrainError("train.plugin='zero2_cpu' offloads optimizer states from GPU to CPU; there is no GPU here. "
                         "Use plugin zero2 on CPU")
    if cfg.plugin == "3d":
        raise TrainError(
            "train.plugin='3d' (HybridParallelPlugin: tp/pp/sp) is not supported on CPU by this trainer: its "
            "shardformer kernels, sequence parallelism and pipeline p2p target NCCL GPUs; use plugin ddp or zero2 "
            "on CPU")
    if cfg.precision == "fp16":
        raise TrainError("train.precision='fp16' needs a GPU (loss scaling with CUDA AMP); use bf16 or fp32 on CPU")


def build_plugin(cfg: TrainConfig, device_type: str, vocab_size: int | None = None):
    check_device(cfg, device_type)
    name, kwargs = plugin_spec(cfg, device_type, vocab_size)
    import colossalai.booster.plugin as plugins

    return getattr(plugins, name)(**kwargs)


def booster_mixed_precision(cfg: TrainConfig, device_type: str) -> str | None:
    """Plugins that do not control precision (ddp): fp16 via the Booster (torch AMP, GPU); bf16 via autocast in
    the loop (see loop.autocast_context); fp32 nothing."""
    if cfg.plugin == "ddp" and cfg.precision == "fp16":
        return "fp16"
    return None
