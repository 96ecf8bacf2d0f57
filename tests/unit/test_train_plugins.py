from __future__ import annotations

import pytest

from cpt.errors import TrainError
from cpt.train.config import from_mapping
from cpt.train.plugins import build_plugin, check_device, plugin_spec


def spec(dev="cuda", vocab=None, **kw):
    return plugin_spec(from_mapping(kw), dev, vocab)


def test_specs_as_documented():
    assert spec(plugin="ddp")[0] == "TorchDDPPlugin"
    name, kw = spec(plugin="zero2", precision="bf16", grad_clip=1.0)
    assert name == "LowLevelZeroPlugin" and kw["stage"] == 2 and kw["max_norm"] == 1.0 and not kw["cpu_offload"]
    assert kw["overlap_communication"] and not spec("cpu", plugin="zero2")[1]["overlap_communication"]
    assert spec(plugin="zero2_cpu")[1]["cpu_offload"]
    assert spec(plugin="gemini")[1]["placement_policy"] == "static"
    assert spec(plugin="gemini_auto")[1]["placement_policy"] == "auto"
    name, kw = spec(plugin="3d", tp=2, pp=2, zero_stage=1, pp_microbatch_size=2, vocab=128)
    assert name == "HybridParallelPlugin"
    assert (kw["tp_size"], kw["pp_size"], kw["zero_stage"], kw["microbatch_size"]) == (2, 2, 1, 2)
    _, kw = spec(plugin="3d", sp=4, sp_mode="all_to_all")
    assert kw["sp_size"] == 4 and kw["enable_sequence_parallelism"] and kw["sequence_parallelism_mode"] == "all_to_all"


def test_tp_needs_vocab_divisible_by_64_tp():
    with pytest.raises(TrainError, match="divisible by 64 x tp = 128"):
        spec(plugin="3d", tp=2, vocab=32000 + 64)
    spec(plugin="3d", tp=2, vocab=32000)


@pytest.mark.parametrize("plugin", ["gemini", "gemini_auto", "3d", "zero2_cpu"])
def test_gpu_only_plugins_refused_on_cpu_with_reason(plugin):
    with pytest.raises(TrainError, match="CPU|no GPU"):
        check_device(from_mapping({"plugin": plugin}), "cpu")
    with pytest.raises(TrainError):
        build_plugin(from_mapping({"plugin": plugin}), "cpu")


def test_fp16_refused_on_cpu():
    with pytest.raises(TrainError, match="fp16"):
        check_device(from_mapping({"plugin": "ddp", "precision": "fp16"}), "cpu")
