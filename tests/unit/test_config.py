"""Config validation: schema with defaults, one clear error naming the key, cross-section rules."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cpt.artifacts.corpus import category_languages
from cpt.artifacts.layout import Layout
from cpt.core import config as cc
from cpt.core import schema as sc
from cpt.core.errors import ConfigError
from cpt.workflow import experiment

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "config").glob("*.yaml"))
OVERLAYS = {"lora-after-embeddings.yaml"}  # overlays of config/config.yaml (docs/lora.md)


@pytest.fixture()
def demo():
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_validate(path):
    if path.name in OVERLAYS:  # a second --configfile over the demo: Snakemake deep-merges it
        from snakemake.utils import update_config

        merged = yaml.safe_load((REPO / "config" / "config.yaml").read_text(encoding="utf-8"))
        update_config(merged, yaml.safe_load(path.read_text(encoding="utf-8")))
        cfg = experiment.validate(merged)
    else:
        cfg = experiment.load(path)
    assert cfg["experiment"]
    assert cc.stage_names(cfg)


def test_defaults_are_filled(demo):
    demo.pop("seed")
    cfg = experiment.validate(demo)
    assert cfg["seed"] == 1234
    assert "seed" not in demo  # the input is not mutated


def test_unknown_key_named(demo):
    demo["tokenizr"] = {}
    with pytest.raises(ConfigError, match=r"config key tokenizr: Additional properties"):
        experiment.validate(demo)


def test_bad_type_named(demo):
    demo["resources"]["train"]["mem_mb"] = "lots"
    with pytest.raises(ConfigError, match=r"config key resources\.train\.mem_mb: 'lots' is not of type 'integer'"):
        experiment.validate(demo)


def test_missing_section_named(demo):
    del demo["train"]
    with pytest.raises(ConfigError, match=r"config key train: 'train' is a required property"):
        experiment.validate(demo)


@pytest.mark.parametrize("where, value, match", [
    (("train", "stages", "injection", "init_from"), "replay",
     r"train\.stages\.injection\.init_from: 'replay' is neither"),
    (("dataset", "stages", "base", "replay"), {"from": ["injection"], "share": 0.1},
     r"dataset\.stages\.base\.replay\.from: 'injection' is not an earlier"),
    (("evaluate", "benchmarks", "mmlu", "format"), "mmlu_v2",
     r"evaluate\.benchmarks\.mmlu\.format: 'mmlu_v2' is not one of agieval"),
    (("export",), {"gguf": {"enabled": True, "stages": ["replay", "sft"]}},
     r"export\.gguf\.stages: 'sft' is not a training stage"),
])
def test_cross_section_rules_name_the_key(demo, where, value, match):
    node = demo
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    with pytest.raises(ConfigError, match=match):
        experiment.validate(demo)


def test_stage_chain(demo):
    cfg = experiment.validate(demo)
    assert cc.stage_tokenizer(cfg, "base") == "base"
    assert cc.stage_tokenizer(cfg, "injection") == "extended"
    assert cc.stage_tokenizer(cfg, "replay") == "extended"
    layout = Layout(cfg)
    assert layout.model_source("injection") == Path("results/demo/train/injection/final")
    assert layout.model_source("init") == Path("results/demo/model/init")


def test_gguf_export_is_off_and_names_the_last_stage_by_default(demo):
    cfg = experiment.validate(demo)
    assert cfg["export"]["gguf"] == {"enabled": False, "stages": None, "outtype": "f16"}
    assert cc.gguf_stages(cfg) == [cc.stage_names(cfg)[-1]] == ["replay"]
    demo["export"] = {"gguf": {"stages": ["base", "replay"]}}
    assert cc.gguf_stages(experiment.validate(demo)) == ["base", "replay"]
    assert Layout(cfg).gguf("replay") == Path("results/demo/export/replay.gguf")


def test_stage_section_merges_defaults(demo):
    demo["train"]["defaults"]["lr"] = 1e-3
    demo["train"]["stages"]["replay"]["lr"] = 5e-4
    cfg = experiment.validate(demo)
    assert cc.stage_section(cfg, "replay")["lr"] == 5e-4
    assert cc.stage_section(cfg, "injection")["lr"] == 1e-3
    # the replay stage's section does not carry other stages' values: changing one stage changes one params hash
    before = cc.stage_section(cfg, "injection")
    cfg2 = copy.deepcopy(cfg)
    cfg2["train"]["stages"]["replay"]["lr"] = 1e-4
    assert cc.stage_section(cfg2, "injection") == before


def test_snakemake_stops_before_any_job_naming_the_key(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--directory", str(tmp_path),
         "--snakefile", str(REPO / "Snakefile"), "--configfile", str(REPO / "config" / "config.yaml"),
         "--config", "experiment=bad/name"],
        capture_output=True, text=True, cwd=REPO,
    )
    assert out.returncode != 0
    assert "config key experiment: 'bad/name' does not match" in out.stdout + out.stderr
    assert not (tmp_path / "results").exists()


def test_missing_local_llama_path_is_one_clear_error(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--directory", str(tmp_path),
         "--snakefile", str(REPO / "Snakefile"), "--configfile", str(REPO / "config" / "colossal-llama-2-7b.yaml")],
        capture_output=True, text=True, cwd=REPO,
    )
    assert out.returncode != 0
    assert "config key model.base.path: '/path/to/Llama-2-7b-hf' is not a directory" in out.stdout + out.stderr


def test_locked_7b_dag_requests_64_gpus(tmp_path):
    llama = tmp_path / "llama"
    llama.mkdir()
    for path in experiment.load(REPO / "config" / "colossal-llama-2-7b.yaml", ["model.base.path=/x"])["corpus"][
            "categories"].values():  # the user's corpus files (declared inputs of corpus_raw), relative to the run
        for p in path["paths"]:
            (tmp_path / p).mkdir(parents=True, exist_ok=True)  # directories of *.jsonl
    out = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--directory", str(tmp_path),
         "--snakefile", str(REPO / "Snakefile"), "--configfile", str(REPO / "config" / "colossal-llama-2-7b.yaml"),
         "--config", f"model={{'base': {{'kind': 'local', 'path': '{llama}'}}}}"],
        capture_output=True, text=True, cwd=REPO,
    )
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    train_jobs = [block for block in text.split("\nrule ")[1:] if block.startswith("train:")]
    assert train_jobs and all("nodes=8" in b and "gres=gpu:8" in b for b in train_jobs)
    for rule in ("model_base_check", "tokenizer_extended", "model_init", "evaluate", "report"):
        assert f"rule {rule}:" in text or f"localrule {rule}:" in text


# ------------------------------------------------------------------------- one section: schema defaults, overrides
def test_complete_fills_a_section_and_names_the_full_key():
    sec = sc.complete("model.init", {"method": "mean"})
    assert sec["method"] == "mean" and sec["report"]["seq_len"] == 256 and sec["seed"] == 1234
    assert sc.complete("dataset.stages.*", None) == {"kind": "pretrain", "shuffle": True}
    with pytest.raises(ConfigError, match=r"config key model\.init\.report\.seq_len: 1 is less than"):
        sc.complete("model.init", {"report": {"seq_len": 1}})
    with pytest.raises(ConfigError, match=r"config key dataset\.stages\.s\.categories\.a\.cap: Additional prop"):
        sc.complete("dataset", {"stages": {"s": {"categories": {"a": {"cap": 1}}}}})  # inside a oneOf
    with pytest.raises(ConfigError, match="not in the schema"):
        sc.subschema("dataset.nope")
    assert sc.default("dataset.max_length") == 4096 and sc.default("model.base")["tiny"]["hidden_size"] == 64


def test_strings_get_the_schemas_types(demo):
    """Snakemake's nested --config values arrive as strings (YAML BaseLoader); YAML 1.1 reads 1e-4 as a string."""
    demo["dataset"]["max_length"] = "256"
    demo["train"]["defaults"]["lr"] = "1e-4"
    demo["model"]["init"]["pad_to_multiple_of"] = "null"
    demo["evaluate"]["bpb"]["enabled"] = "false"
    demo["dataset"]["stages"]["replay"]["replay"]["share"] = "0.25"
    cfg = experiment.validate(demo)
    assert cfg["dataset"]["max_length"] == 256 and cfg["train"]["defaults"]["lr"] == 1e-4
    assert cfg["model"]["init"]["pad_to_multiple_of"] is None and cfg["evaluate"]["bpb"]["enabled"] is False
    assert cfg["dataset"]["stages"]["replay"]["replay"]["share"] == 0.25
    assert sc.coerce({"experiment": "123"})["experiment"] == "123"  # a string key stays a string
    demo["dataset"]["max_length"] = "lots"
    with pytest.raises(ConfigError, match=r"dataset\.max_length: 'lots' is not of type 'integer'"):
        experiment.validate(demo)


def test_overrides_use_the_schemas_types(demo):
    out = sc.apply_overrides(demo, ["max_length=256", "dataset.num_bins=2", "train.defaults.lr=3e-4",
                                    "dataset.stages.base.categories=[en_novel]"], prefix="dataset")
    assert out["dataset"]["max_length"] == 256 and out["dataset"]["num_bins"] == 2
    assert out["train"]["defaults"]["lr"] == 3e-4 and out["dataset"]["stages"]["base"]["categories"] == ["en_novel"]
    assert demo["dataset"]["max_length"] == 512  # the input is not changed
    sec = sc.apply_overrides({"lr": 1.0}, ["train.lr=1e-5", "warmup_steps=null"], prefix="train",
                             schema_key="train.defaults")
    assert sec == {"lr": 1e-5, "warmup_steps": None}
    with pytest.raises(ConfigError, match=r"--set 'max_length': expected KEY=VALUE"):
        sc.apply_overrides(demo, ["max_length"], prefix="dataset")
    with pytest.raises(ConfigError, match="dataset.max_length is not a mapping"):
        sc.apply_overrides(demo, ["dataset.max_length.x=1"])


def test_parse_pairs_is_the_one_key_value_parser():
    assert sc.parse_pairs(["a=1", "b=x=y", "a=2"], "--opt") == {"a": "2", "b": "x=y"}
    assert sc.parse_pairs(["en=a.jsonl", "en=b.jsonl", "zh=c"], "--heldout", multi=True) == {
        "en": ["a.jsonl", "b.jsonl"], "zh": ["c"]}
    for bad in (["novalue"], ["=x"]):
        with pytest.raises(ConfigError, match="--opt"):
            sc.parse_pairs(bad, "--opt")


def test_replay_from_and_dataset_config(demo):
    cfg = experiment.validate(demo)
    assert cc.replay_from(cfg["dataset"]["stages"]["replay"]) == ["base", "injection"]
    assert cc.replay_from({"replay": {"from": "base", "share": 0.1}}) == ["base"] and cc.replay_from(None) == []
    ds = cc.dataset_config(cfg, "replay")
    assert list(ds["stages"]) == ["replay"] and ds["max_length"] == cfg["dataset"]["max_length"]
    assert category_languages(cfg)["zh_news"] == "zh"
