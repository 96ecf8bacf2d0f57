"""The engine seam (cpt.train.engine, engine_torch, torch_traits) without launching a run: the config keys, what the
torch engine refuses (naming the key), how the plugins map onto it, and DCP metadata that could run code refused."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from cpt.core.errors import CheckpointError, ConfigError, TrainError
from cpt.train.config import from_mapping


def test_engine_key_defaults_to_colossalai_and_is_per_stage():
    assert from_mapping({}).engine == "colossalai"
    assert from_mapping({"engine": "torch", "plugin": "ddp"}).engine == "torch"
    with pytest.raises(ConfigError, match="engine"):
        from_mapping({"engine": "deepspeed"})


@pytest.mark.parametrize("section, key", [
    ({"engine": "torch", "lora": {}}, "train.lora"),
    ({"engine": "torch", "precision": "fp16"}, "train.precision"),
    ({"engine": "colossalai", "compile": True}, "train.compile"),
])
def test_what_the_torch_engine_does_not_take_is_a_config_error_naming_the_key(section, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        from_mapping(section)


@pytest.mark.parametrize("section, match", [
    ({"plugin": "zero2_cpu"}, "train.plugin='zero2_cpu'.*engine 'torch'"),
    ({"plugin": "3d", "tp": 2, "pp": 2}, "train.pp=2: train.engine 'torch'"),
    ({"plugin": "3d", "tp": 2, "sp": 2}, "train.sp=2: train.engine 'torch'"),
])
def test_layouts_without_a_torch_analogue_are_refused_with_the_key(section, match):
    from cpt.train.plugins import traits

    t = traits(from_mapping({"engine": "torch", "precision": "bf16", **section}))
    with pytest.raises(TrainError, match=match):
        t.check("cpu")


def test_tensor_parallel_layout_of_the_torch_engine():
    from cpt.train.plugins import traits

    t = traits(from_mapping({"engine": "torch", "plugin": "3d", "tp": 2, "precision": "fp32"}))
    assert t.tensor_parallel and not t.sharded and not t.replicated_params
    lay = t.layout(None, 4, 3)  # mesh (dp 2, tp 2): rank 3 = dp 1, tp 1
    assert (lay.dp_size, lay.dp_rank, lay.data_replicas, lay.loss_replicas) == (2, 1, 2, 2)
    with pytest.raises(TrainError, match="train.tp=2 must divide"):
        t.layout(None, 3, 0)


def test_plugins_map_onto_torch_parallelism():
    from cpt.train.plugins import traits
    from cpt.train.torch_traits import TorchTraits

    ddp = traits(from_mapping({"engine": "torch", "plugin": "ddp", "precision": "bf16"}))
    z2 = traits(from_mapping({"engine": "torch", "plugin": "zero2", "precision": "bf16"}))
    z3 = traits(from_mapping({"engine": "torch", "plugin": "gemini", "precision": "bf16"}))
    assert all(isinstance(t, TorchTraits) for t in (ddp, z2, z3))
    assert (ddp.sharding, z2.sharding, z3.sharding) == ("replicate", "shard_grad_op", "full_shard")
    assert ddp.replicated_params and not z2.replicated_params
    # fp32 master weights everywhere; DDP autocasts, FSDP2 casts through its MixedPrecisionPolicy
    assert ddp.load_dtype == z2.load_dtype == torch.float32 and not ddp.keeps_master_weights
    assert ddp.param_dtype == torch.float32 and z2.param_dtype == torch.bfloat16
    with ddp.autocast("cpu"):
        assert torch.ones(2, 2).matmul(torch.ones(2, 2)).dtype == torch.bfloat16
    with z2.autocast("cpu"):
        assert torch.ones(2, 2).matmul(torch.ones(2, 2)).dtype == torch.float32
    assert ddp.resume.reshard and z3.resume.reshard and not ddp.lora


def test_the_trainer_never_tests_a_plugin_or_engine_name():
    import cpt.train.loop as loop
    import cpt.train.trainer as trainer

    for mod in (loop, trainer):
        source = Path(mod.__file__).read_text()
        for name in ("plugin", "engine"):
            for op in ("==", "!=", " in "):
                assert f"cfg.{name}{op}" not in source.replace(" ==", "==").replace(" !=", "!="), (mod, name, op)


class _Payload:
    def __reduce__(self):
        return (print, ("this ran",))


def test_dcp_metadata_that_would_run_code_is_refused(tmp_path, capsys):
    import torch.distributed.checkpoint as dcp

    from cpt.train.checkpoint import _load_part
    from cpt.train.engine_torch import _safe_reader

    model = torch.nn.Linear(3, 2)
    dcp.save({"model": model.state_dict()}, checkpoint_id=str(tmp_path / "model"))  # a world of one
    state = {"model": torch.nn.Linear(3, 2).state_dict()}
    dcp.load(state, storage_reader=_safe_reader(str(tmp_path / "model")))  # the honest metadata loads
    assert torch.equal(state["model"]["weight"], model.weight.detach())
    (tmp_path / "model" / ".metadata").write_bytes(pickle.dumps(_Payload()))
    with pytest.raises(CheckpointError, match="refused to load"):
        _load_part(tmp_path, "model", lambda: dcp.load(state, storage_reader=_safe_reader(str(tmp_path / "model"))))
    assert "this ran" not in capsys.readouterr().out
