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


def test_one_traits_object_per_plugin_and_no_name_branches_in_the_loop():
    from pathlib import Path

    import cpt.train.loop as loop
    from cpt.train.config import PLUGINS
    from cpt.train.plugins import TRAITS, traits

    assert sorted(TRAITS) == sorted(PLUGINS)
    for name in PLUGINS:
        t = traits(from_mapping({"plugin": name, "precision": "bf16"}))
        assert t.name == name and isinstance(t.resume.exact, bool)
    source = Path(loop.__file__).read_text()
    assert "cfg.plugin ==" not in source and "cfg.plugin in" not in source and "cfg.plugin !=" not in source


def test_traits_say_what_differs():
    import torch

    from cpt.train.plugins import traits

    ddp = traits(from_mapping({"plugin": "ddp", "precision": "bf16"}))
    assert not ddp.owns_precision and ddp.param_dtype == torch.float32 and not ddp.clips_in_plugin
    assert ddp.accumulate_without_sync and ddp.replicated_params and not ddp.pipeline
    with ddp.autocast("cpu"):
        assert torch.ones(2, 2).matmul(torch.ones(2, 2)).dtype == torch.bfloat16
    assert traits(from_mapping({"plugin": "ddp", "precision": "fp16"})).booster_mixed_precision("cuda") == "fp16"
    z = traits(from_mapping({"plugin": "zero2", "precision": "bf16"}))
    assert z.owns_precision and z.param_dtype == torch.bfloat16 and z.clips_in_plugin and z.replicated_params
    hy = traits(from_mapping({"plugin": "3d", "pp": 2, "precision": "bf16"}))
    assert hy.pipeline and hy.distributed_loss and not hy.replicated_params
    assert not traits(from_mapping({"plugin": "3d", "tp": 2})).pipeline
    assert not traits(from_mapping({"plugin": "gemini"})).replicated_params


@pytest.mark.parametrize("name", ["ddp", "zero2", "gemini", "3d"])
def test_lora_trait_matches_colossalai(name):
    import colossalai.booster.plugin as plugins

    from cpt.train.plugins import TRAITS

    t = TRAITS[name]
    assert getattr(plugins, t.colossal_class).support_lora(object()) is t.lora
