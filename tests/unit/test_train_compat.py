"""The CPU shims are still needed (upstream still fails without them) and correct (patched calls work).

If an upgrade of colossalai/torch fixes an upstream method, the matching `still needed` case fails: delete that
shim from cpt/train/compat.py."""

from __future__ import annotations

import pytest
import torch

from cpt.train import compat

compat.apply_cpu_shims()
ACC_SHIMS = sorted(n.split(".", 1)[1] for n in compat.SHIMS if n.startswith("CpuAccelerator."))
CALL_ARGS = {"set_rng_state_all": ([torch.get_rng_state()],), "manual_seed": (1,), "manual_seed_all": (1,),
             "set_stream": (None,), "stream": (None,)}


@pytest.mark.parametrize("name", ACC_SHIMS)
def test_upstream_cpu_accelerator_method_still_fails(name):
    from colossalai.accelerator.cpu_accelerator import CpuAccelerator

    original = compat.ORIGINALS[f"CpuAccelerator.{name}"]
    with pytest.raises((RuntimeError, TypeError)):
        original(CpuAccelerator(), *CALL_ARGS.get(name, ()))


@pytest.mark.parametrize("name", ACC_SHIMS)
def test_patched_method_works(name):
    from colossalai.accelerator.cpu_accelerator import CpuAccelerator

    getattr(CpuAccelerator(), name)(*CALL_ARGS.get(name, ()))


def test_patched_semantics():
    from colossalai.accelerator.cpu_accelerator import CpuAccelerator

    acc = CpuAccelerator()
    state = acc.get_rng_state()
    a = torch.rand(3)
    acc.set_rng_state(state)
    assert torch.equal(a, torch.rand(3))
    with acc.stream(acc.Stream()):
        acc.current_stream().wait_stream(acc.current_stream())
    assert acc.device_count() == 1


def test_hccl_shim_still_needed():
    assert "torch.distributed.is_hccl_available" in compat.ORIGINALS, (
        "torch now has is_hccl_available: drop that shim from compat.py")
    assert torch.distributed.is_hccl_available() is False


def test_zero_device_assert_still_upstream_and_dtype_check_kept():
    from colossalai.zero.low_level.low_level_optim import LowLevelZeroOptimizer

    original = compat.ORIGINALS["LowLevelZeroOptimizer._sanity_checks"]

    class Fake:
        _dtype = torch.float32
        optim = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)

    with pytest.raises(AssertionError, match="device is required"):
        original(Fake())
    LowLevelZeroOptimizer._sanity_checks(Fake())  # patched: passes on CPU
    Fake.optim = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2, dtype=torch.bfloat16))], lr=0.1)
    with pytest.raises(AssertionError, match="same dtype"):
        LowLevelZeroOptimizer._sanity_checks(Fake())
