"""CPU compatibility shims for ColossalAI 0.5.0 (the ONLY place where ColossalAI is patched).

ColossalAI's CPU accelerator raises on methods that are meaningless on a CPU (synchronize, empty_cache,
streams, device count, seeding) instead of doing nothing, and a few code paths assume a GPU. Measured on CPU
with torch 2.13 and ColossalAI 0.5.0 (installed --no-deps, README "Known limits"): with these shims TorchDDPPlugin and LowLevelZeroPlugin (ZeRO-1/2) train with gloo on CPU
and ddp optimizer checkpoints load. Every shim is listed in SHIMS with a probe that proves the unpatched
library still needs it; tests/unit/test_train_compat.py fails when an upgrade makes one unnecessary or wrong.

`apply_cpu_shims()` is idempotent and must be called only when training on CPU (loop.py does this).
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Callable

import torch

_APPLIED = False
ORIGINALS: dict[str, Callable] = {}


class NullStream:
    """A stand-in for a device stream on CPU: every operation is a no-op (CPU ops are synchronous)."""

    def wait_stream(self, other=None):
        return None

    def synchronize(self):
        return None

    def record_event(self, event=None):
        return None

    def wait_event(self, event=None):
        return None

    def query(self):
        return True


_NULL_STREAM = NullStream()


def _noop(self, *args, **kwargs):
    return None


def _get_rng_state(self, device=None):
    # upstream passes `device` to torch.get_rng_state(), which takes no argument
    return torch.get_rng_state()


def _get_rng_state_all(self):
    return [torch.get_rng_state()]


def _set_rng_state_all(self, new_states):
    torch.set_rng_state(new_states[0])


def _manual_seed(self, seed):
    torch.manual_seed(seed)


def _initial_seed(self):
    return torch.initial_seed()


def _device_count(self):
    return 1


def _zero(self, *args, **kwargs):
    return 0


def _stream_factory(self, *args, **kwargs):
    return _NULL_STREAM


def _stream_ctx(self, stream_=None):
    return nullcontext()


# accelerator method name -> replacement
_ACCELERATOR_SHIMS: dict[str, Callable] = {
    "synchronize": _noop,
    "empty_cache": _noop,
    "device_count": _device_count,
    "get_rng_state": _get_rng_state,
    "get_rng_state_all": _get_rng_state_all,
    "set_rng_state_all": _set_rng_state_all,
    "manual_seed": _manual_seed,
    "manual_seed_all": _manual_seed,
    "initial_seed": _initial_seed,
    "memory_allocated": _zero,
    "max_memory_allocated": _zero,
    "reset_peak_memory_stats": _noop,
    "Stream": _stream_factory,
    "current_stream": _stream_factory,
    "default_stream": _stream_factory,
    "set_stream": _noop,
    "stream": _stream_ctx,
}

# one-line reason per shim (documentation + test ids)
SHIMS: dict[str, str] = {
    **{f"CpuAccelerator.{name}": "raises RuntimeError (or passes an argument torch rejects) on CPU"
       for name in _ACCELERATOR_SHIMS},
    "LowLevelZeroOptimizer._sanity_checks": "asserts the accelerator is cuda or npu",
    "torch.distributed.is_hccl_available": "missing from torch; colossalai.pipeline.p2p calls it",
}


def _zero_sanity_checks_without_device_assert(self):
    """LowLevelZeroOptimizer._sanity_checks minus `assert accelerator in (cuda, npu)`: keeps the dtype check."""
    for param_group in self.optim.param_groups:
        for param in param_group["params"]:
            if not getattr(param, "skip_zero_check", False):
                if param.dtype != self._dtype:
                    raise AssertionError(
                        f"Parameters are expected to have the same dtype `{self._dtype}`, but got `{param.dtype}`"
                    )


def apply_cpu_shims() -> None:
    """Patch ColossalAI so its CPU accelerator's no-op methods are no-ops. Idempotent."""
    global _APPLIED
    if _APPLIED:
        return
    from colossalai.accelerator.cpu_accelerator import CpuAccelerator
    from colossalai.zero.low_level.low_level_optim import LowLevelZeroOptimizer

    for name, fn in _ACCELERATOR_SHIMS.items():
        ORIGINALS[f"CpuAccelerator.{name}"] = getattr(CpuAccelerator, name)
        setattr(CpuAccelerator, name, fn)
    ORIGINALS["LowLevelZeroOptimizer._sanity_checks"] = LowLevelZeroOptimizer._sanity_checks
    LowLevelZeroOptimizer._sanity_checks = _zero_sanity_checks_without_device_assert
    if not hasattr(torch.distributed, "is_hccl_available"):
        ORIGINALS["torch.distributed.is_hccl_available"] = None
        torch.distributed.is_hccl_available = lambda: False
    _APPLIED = True


def shims_applied() -> bool:
    return _APPLIED
