"""Config mistakes that used to escape as tracebacks (KeyError, CyclicGraphException, a duplicate key silently
won): each is one ConfigError whose message names the config key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cpt.core import config as cc
from cpt.core.errors import ConfigError
from cpt.core.yamlio import loads, read_yaml
from cpt.workflow import experiment

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def demo():
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text(encoding="utf-8"))


def test_unknown_from_stage_names_the_key(demo):
    demo["model"]["init"]["from_stage"] = "englsh"
    with pytest.raises(ConfigError, match=r"config key model\.init\.from_stage: 'englsh' is not a training stage"):
        experiment.validate(demo)


def test_init_from_chain_through_an_unknown_stage_names_the_key(demo):
    demo["train"]["stages"]["base"]["init_from"] = "pretrain"   # model.init.from_stage (base) follows this chain
    with pytest.raises(ConfigError, match=r"config key train\.stages\.base\.init_from: 'pretrain' is neither"):
        experiment.validate(demo)
    raw = experiment.validate(yaml.safe_load((REPO / "config" / "config.yaml").read_text(encoding="utf-8")))
    raw["train"]["stages"]["injection"]["init_from"] = "warmup"  # the helper itself, called on a broken config
    with pytest.raises(ConfigError, match=r"config key train\.stages\.injection\.init_from: 'warmup' is no"):
        cc.stage_tokenizer(raw, "replay")


@pytest.mark.parametrize("frm", ["replay", ["base", "replay"]])
def test_stage_replaying_from_itself_names_the_key(demo, frm):
    demo["dataset"]["stages"]["replay"]["replay"]["from"] = frm
    with pytest.raises(ConfigError, match=r"config key dataset\.stages\.replay\.replay\.from: a stage cannot "
                                          r"replay from itself"):
        experiment.validate(demo)


def test_duplicate_key_names_file_line_and_key(tmp_path):
    text = (REPO / "config" / "config.yaml").read_text(encoding="utf-8")
    text = text.replace("  vocab_size: 69104 ", "  vocab_size: 69104\n  vocab_size: 40000 ", 1)
    path = tmp_path / "dup.yaml"
    path.write_text(text, encoding="utf-8")
    line = next(no for no, ln in enumerate(text.splitlines(), 1) if ln.startswith("  vocab_size: 40000"))
    with pytest.raises(ConfigError, match=rf"dup\.yaml:{line}: config key tokenizer\.vocab_size: given twice"):
        experiment.load(path)
    with pytest.raises(ConfigError, match=r"config key a\.1\.b: given twice \(first at line 3\)"):
        loads("a:\n  - x\n  - b: 1\n    b: 2\n")
    assert loads("a: {b: 1}\nc: [1, 2]\n") == {"a": {"b": 1}, "c": [1, 2]}


def test_every_shipped_yaml_file_has_unique_keys():
    files = [*REPO.glob("config/**/*.yaml"), *REPO.glob("workflow/schemas/*.yaml"), REPO / "data" / "sources.yaml",
             *REPO.glob("profiles/**/*.yaml")]
    assert len(files) > 5
    for f in files:
        read_yaml(f)


def test_snakemake_refuses_a_config_file_with_a_duplicate_key(tmp_path):
    text = (REPO / "config" / "config.yaml").read_text(encoding="utf-8")
    path = tmp_path / "dup.yaml"
    path.write_text(text.replace("experiment: demo\n", "experiment: demo\nexperiment: other\n", 1), encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--directory", str(tmp_path),
         "--snakefile", str(REPO / "Snakefile"), "--configfile", str(path)],
        capture_output=True, text=True, cwd=REPO,
    )
    assert out.returncode != 0
    assert "config key experiment: given twice (first at line" in out.stdout + out.stderr
    assert not (tmp_path / "results").exists()
