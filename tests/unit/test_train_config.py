from __future__ import annotations

from pathlib import Path

import pytest

from cpt.core.errors import ConfigError
from cpt.train.config import TrainConfig, from_mapping, load_config, with_dataset_max_length


def test_published_recipe_is_expressible(tmp_path):
    p = tmp_path / "train.yaml"
    p.write_text("plugin: zero2\nprecision: bf16\nlr: 1e-4\nweight_decay: 0.01\nwarmup_steps: 100\n"
                 "grad_clip: 1.0\nmicro_batch_size: 8\nmax_length: 4096\ngrad_checkpointing: true\n"
                 "flash_attention: true\nsave_interval: 400\nepochs: 1\n")
    cfg = load_config(p)
    assert (cfg.plugin, cfg.precision, cfg.lr, cfg.weight_decay, cfg.warmup_steps, cfg.grad_clip,
            cfg.micro_batch_size, cfg.max_length, cfg.grad_checkpointing, cfg.flash_attention) == (
        "zero2", "bf16", 1e-4, 0.01, 100, 1.0, 8, 4096, True, True)
    assert cfg.betas == (0.9, 0.95) and cfg.eps == 1e-8 and cfg.min_lr_ratio == 0.1


def test_overrides_and_json(tmp_path):
    p = tmp_path / "t.json"
    p.write_text('{"plugin": "ddp", "lr": 0.001}')
    cfg = load_config(p, ["train.lr=3e-3", "accumulation_steps=4", "freeze_non_embeds=true"])
    assert cfg.plugin == "ddp" and cfg.lr == 3e-3 and cfg.accumulation_steps == 4 and cfg.freeze_non_embeds


@pytest.mark.parametrize("section, key", [
    ({"lrr": 1}, "lrr"), ({"plugin": "fsdp"}, "plugin"), ({"micro_batch_size": 0}, "micro_batch_size"),
    ({"tp": 2}, "tp"), ({"lr": "fast"}, "lr"), ({"grad_checkpointing": "yes"}, "grad_checkpointing"),
    ({"cross_document_attention": False}, "cross_document_attention"), ({"init": "checkpoint"}, "init_checkpoint"),
])
def test_bad_values_name_the_key(section, key):
    with pytest.raises(ConfigError, match=key):
        from_mapping(section)


def test_to_dict_round_trips():
    cfg = TrainConfig(plugin="ddp", tp=1, lr=2e-4)
    assert from_mapping(cfg.to_dict()) == cfg


def test_defaults_are_the_schemas():
    """TrainConfig's field defaults are read from workflow/schemas/train.schema.yaml (train.defaults)."""
    import dataclasses

    from cpt.core.schema import default

    schema = default("train.defaults")
    fields = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    assert set(fields) == set(schema)
    assert {k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()} == schema
    assert from_mapping({}) == TrainConfig()


def test_strings_and_experiment_configs(tmp_path):
    repo = Path(__file__).resolve().parents[2]
    cfg = load_config(repo / "config" / "config.yaml", ["lr=1e-4", "warmup_steps=null"], stage="replay")
    assert cfg.lr == 1e-4 and cfg.warmup_steps is None and cfg.plugin == "ddp"
    with pytest.raises(ConfigError, match="give --stage"):
        load_config(repo / "config" / "config.yaml")
    assert from_mapping({"lr": "2e-4", "epochs": "3"}).lr == 2e-4  # YAML 1.1 / Snakemake strings
    with pytest.raises(ConfigError, match=r"config key train\.lr: 'fast' is not of type 'number'"):
        from_mapping({"lr": "fast"})


def test_max_length_follows_the_dataset_manifest():
    assert with_dataset_max_length(TrainConfig(), {"max_length": 512}, "d").max_length == 512
    assert with_dataset_max_length(TrainConfig(max_length=512), {"max_length": 512}, "d").max_length == 512
    with pytest.raises(ConfigError, match=r"train.max_length is 4096 but d/manifest.json was built with "
                                          r"dataset.max_length 512"):
        with_dataset_max_length(TrainConfig(max_length=4096), {"max_length": 512}, "d")


def test_print_config_and_help_name_the_keys():
    from click.testing import CliRunner

    from cpt.train.cli import cli_train

    repo = Path(__file__).resolve().parents[2]
    r = CliRunner().invoke(cli_train, ["--config", str(repo / "config" / "config.yaml"), "--stage", "injection",
                                       "--set", "lr=5e-4", "--print-config"])
    assert r.exit_code == 0, r.output
    import yaml

    out = yaml.safe_load(r.output)
    assert out["lr"] == 5e-4 and out["dist_timeout_s"] == TrainConfig().dist_timeout_s and "init_from" not in out
    help_text = CliRunner().invoke(cli_train, ["--help"]).output
    assert "train.schema.yaml" in help_text and "--print-config" in help_text


@pytest.mark.parametrize("section, match", [
    ({"plugin": "3d", "pp": 2, "micro_batch_size": 6, "pp_microbatch_size": 4}, "multiple of train.pp_microbatch_size"),
    ({"plugin": "3d", "pp": 2, "micro_batch_size": 2, "pp_microbatch_size": 2}, "at least pp pipeline micro-batches"),
    ({"plugin": "3d", "pp": 4, "micro_batch_size": 6, "pp_microbatch_size": 2}, "micro_batch_size >= pp x"),
])
def test_pipeline_micro_batch_divisibility_names_the_key(section, match):
    with pytest.raises(ConfigError, match="train.micro_batch_size: .*" + match):
        from_mapping(section)


def test_pipeline_micro_batches_accepted_when_divisible():
    cfg = from_mapping({"plugin": "3d", "pp": 2, "micro_batch_size": 8, "pp_microbatch_size": 2})
    assert cfg.micro_batch_size // cfg.pp_microbatch_size == 4
    from_mapping({"plugin": "3d", "tp": 2, "micro_batch_size": 3, "pp_microbatch_size": 2})  # pp = 1: unused
