"""Config validation: schema with defaults, one clear error naming the key, cross-section rules."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cpt import config as cc
from cpt.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "config").glob("*.yaml"))


@pytest.fixture()
def demo():
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_validate(path):
    cfg = cc.load(path)
    assert cfg["experiment"]
    assert cc.stage_names(cfg)


def test_defaults_are_filled(demo):
    demo.pop("seed")
    cfg = cc.validate(demo)
    assert cfg["seed"] == 1234
    assert "seed" not in demo  # the input is not mutated


def test_unknown_key_named(demo):
    demo["tokenizr"] = {}
    with pytest.raises(ConfigError, match=r"config key tokenizr: Additional properties"):
        cc.validate(demo)


def test_bad_type_named(demo):
    demo["resources"]["train"]["mem_mb"] = "lots"
    with pytest.raises(ConfigError, match=r"config key resources\.train\.mem_mb: 'lots' is not of type 'integer'"):
        cc.validate(demo)


def test_missing_section_named(demo):
    del demo["train"]
    with pytest.raises(ConfigError, match=r"config key train: 'train' is a required property"):
        cc.validate(demo)


def test_init_from_must_name_an_earlier_stage(demo):
    demo["train"]["stages"]["injection"]["init_from"] = "replay"
    with pytest.raises(ConfigError, match=r"train\.stages\.injection\.init_from: 'replay' is neither"):
        cc.validate(demo)


def test_stage_chain(demo):
    cfg = cc.validate(demo)
    assert cc.stage_tokenizer(cfg, "base") == "base"
    assert cc.stage_tokenizer(cfg, "injection") == "extended"
    assert cc.stage_tokenizer(cfg, "replay") == "extended"
    layout = cc.Layout(cfg)
    assert layout.model_source("injection") == Path("results/demo/train/injection/final")
    assert layout.model_source("init") == Path("results/demo/model/init")


def test_stage_section_merges_defaults(demo):
    demo["train"]["defaults"]["lr"] = 1e-3
    demo["train"]["stages"]["replay"]["lr"] = 5e-4
    cfg = cc.validate(demo)
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
