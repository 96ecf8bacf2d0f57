from __future__ import annotations

import pytest

from cpt.core.errors import TrainError
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


@pytest.mark.parametrize("plugin", ["gemini", "gemini_auto", "zero2_cpu"])
def test_gpu_only_plugins_refused_on_cpu_with_reason(plugin):
    with pytest.raises(TrainError, match=f"train.plugin={plugin!r}.*(CPU|no GPU)"):
        check_device(from_mapping({"plugin": plugin}), "cpu")
    with pytest.raises(TrainError):
        build_plugin(from_mapping({"plugin": plugin}), "cpu")


def test_3d_and_zero2_run_on_cpu_and_the_cpu_plugin_list_says_so():
    from cpt.train.plugins import CPU_PLUGINS

    assert CPU_PLUGINS == ("ddp", "zero2", "3d")
    for section in ({"plugin": "3d", "tp": 2}, {"plugin": "3d", "pp": 2, "micro_batch_size": 4},
                    {"plugin": "3d", "tp": 2, "sp": 2, "sp_mode": "split_gather"},
                    {"plugin": "3d", "sp": 2, "sp_mode": "all_to_all"}, {"plugin": "zero2", "precision": "fp16"}):
        check_device(from_mapping(section), "cpu")


def test_fp16_with_ddp_refused_on_cpu():
    # torch's CUDA GradScaler/autocast silently turn off on CPU: ddp would train in fp32 while claiming fp16
    with pytest.raises(TrainError, match="train.precision='fp16' with plugin ddp needs a GPU"):
        check_device(from_mapping({"plugin": "ddp", "precision": "fp16"}), "cpu")


@pytest.mark.parametrize("section, match", [
    ({"sp": 2, "sp_mode": "ring_attn"}, "train.sp_mode='ring_attn' needs flash attention"),
    ({"tp": 2, "sp": 2, "sp_mode": "ring"}, "train.sp_mode='ring' is refused on CPU"),
])
def test_sp_modes_that_do_not_run_on_cpu_name_the_key(section, match):
    cfg = from_mapping({"plugin": "3d", **section})
    with pytest.raises(TrainError, match=match):
        check_device(cfg, "cpu")
    check_device(cfg, "cuda")  # allowed on GPUs


def test_neftune_refused_under_3d_with_reason():
    with pytest.raises(TrainError, match="train.neftune_alpha: NEFTune is not supported with plugin 3d"):
        spec(plugin="3d", tp=2, neftune_alpha=5.0, vocab=128)
    spec(plugin="zero2", neftune_alpha=5.0)


def test_3d_fp32_needs_zero_stage_0():
    spec(plugin="3d", tp=2, precision="fp32", vocab=128)
    with pytest.raises(TrainError, match="zero_stage"):
        spec(plugin="3d", tp=2, zero_stage=1, precision="fp32", vocab=128)


def test_pipeline_disables_the_p2p_shape_cache_and_cpu_disables_overlap():
    _, kw = spec(plugin="3d", pp=2, micro_batch_size=4, pp_microbatch_size=2)
    assert kw["enable_metadata_cache"] is False  # sequence lengths change between steps
    assert spec("cpu", plugin="3d", tp=2, vocab=128)[1]["overlap_communication"] is False
    assert spec("cpu", plugin="3d", tp=2, vocab=128)[1]["enable_flash_attention"] is False


def test_layout_counts_loss_replicas_of_the_last_pipeline_stage():
    from cpt.train.plugins import traits

    # 8 ranks, tp 2 x pp 2 -> dp 2: 4 ranks share each sample, only the 2 tp ranks of the last stage hold the loss
    lay = traits(from_mapping({"plugin": "3d", "pp": 2, "tp": 2, "micro_batch_size": 4})).layout_of(8, 2, 1)
    assert (lay.dp_size, lay.dp_rank, lay.data_replicas, lay.loss_replicas) == (2, 1, 4, 2)
    lay = traits(from_mapping({"plugin": "3d", "tp": 2})).layout_of(4, 2, 0)
    assert (lay.data_replicas, lay.loss_replicas) == (2, 2)
    lay = traits(from_mapping({"plugin": "ddp"})).layout(None, 4, 3)
    assert (lay.dp_size, lay.dp_rank, lay.data_replicas, lay.loss_replicas) == (4, 3, 1, 1)


def test_loss_scale_is_read_without_changing_optimizer_state():
    from cpt.train.plugins import loss_scale

    class Mixin:
        loss_scale = 1024.0

    class Opt:
        mixed_precision_mixin = Mixin()

    assert loss_scale(Opt()) == 1024.0 and loss_scale(object()) == 1.0


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
    # torch's DistributedDataParallel, under either engine, re-lays its gradient buckets (settled on a resume)
    assert ddp.rebuilds_grad_buckets and not z.rebuilds_grad_buckets and not hy.rebuilds_grad_buckets
    on_torch = {p: traits(from_mapping({"plugin": p, "engine": "torch"})).rebuilds_grad_buckets
                for p in ("ddp", "zero2", "gemini")}
    assert on_torch == {"ddp": True, "zero2": False, "gemini": False}


@pytest.mark.parametrize("name", ["ddp", "zero2", "gemini", "3d"])
def test_lora_trait_matches_colossalai(name):
    import colossalai.booster.plugin as plugins

    from cpt.train.plugins import TRAITS

    t = TRAITS[name]
    assert getattr(plugins, t.colossal_class).support_lora(object()) is t.lora


def test_master_weights_round_trip_and_layout_mismatch_is_reported(tmp_path):
    import torch

    from cpt.train.plugins import master_weights, traits

    model = torch.nn.Linear(3, 2)

    class ZeroLike:  # LowLevelZero keys its fp32 masters by id(working param)
        def __init__(self):
            self.working_to_master_param = {id(p): p.detach().float().clone() + 0.125 for p in model.parameters()}

    opt = ZeroLike()
    t = traits(from_mapping({"plugin": "zero2", "precision": "bf16"}))
    assert t.keeps_master_weights and not traits(from_mapping({"plugin": "ddp", "precision": "bf16"})).keeps_master_weights
    t.save_master_weights(model, opt, tmp_path, rank=1)
    saved = [m.clone() for m in master_weights(model, opt)]
    for m in master_weights(model, opt):
        m.zero_()
    assert t.load_master_weights(model, opt, tmp_path, rank=1) is None
    assert all(a.equal(b) for a, b in zip(master_weights(model, opt), saved))
    assert "missing" in t.load_master_weights(model, opt, tmp_path, rank=0)

    class AmpLike:  # ColossalAI's mixed-precision optimizers key them by the parameter itself
        working_to_master_map = {p: p.detach().float().clone() for p in torch.nn.Linear(4, 2).parameters()}

    other = torch.nn.Linear(4, 2)
    amp = AmpLike()
    amp.working_to_master_map = {p: p.detach().float().clone() for p in other.parameters()}
    assert len(master_weights(other, amp)) == 2
    assert "does not fit" in t.load_master_weights(other, amp, tmp_path, rank=1)
