"""The locked recipe configs: valid against the schema, every value marked as published / example-script /
our choice / yours, the published numbers present, and training asks for 8 nodes x 8 GPUs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cpt.launch.resources import rule_resources
from cpt.workflow import experiment

REPO = Path(__file__).resolve().parents[2]
LOCKED = ["config/colossal-llama-2-7b.yaml", "config/colossal-llama-2-13b.yaml"]
MARKERS = ("# published", "# example-script", "# our choice", "# yours")


@pytest.mark.parametrize("name", LOCKED)
def test_locked_config_is_valid_and_every_value_is_marked(name):
    path = REPO / name
    cfg = experiment.load(path)
    assert cfg["experiment"] == Path(name).stem  # results/<experiment>/ never collides with another config
    unmarked = []
    for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        code = line.split("#", 1)[0].rstrip()
        if not code.strip() or re.fullmatch(r"\s*[\w.-]+:", code):
            continue  # blank, comment or a mapping opener
        if not any(m in line for m in MARKERS):
            unmarked.append(f"{name}:{no}: {line.strip()}")
    assert not unmarked, "values without a # published / # example-script / # our choice / # yours marker:\n" + \
        "\n".join(unmarked)


def test_published_and_example_script_numbers_are_locked():
    cfg = experiment.load(REPO / LOCKED[0])
    assert cfg["tokenizer"]["vocab_size"] == 69104
    assert cfg["dataset"]["max_length"] == 4096
    d = cfg["train"]["defaults"]
    assert (d["plugin"], d["precision"], d["lr"], d["weight_decay"], d["warmup_steps"], d["grad_clip"]) == \
        ("zero2", "bf16", 1.0e-4, 0.01, 100, 1.0)
    assert (d["micro_batch_size"], d["epochs"], d["save_interval"], d["grad_checkpointing"]) == (8, 1, 400, True)
    res = rule_resources(cfg["resources"], "train", distributed=True)
    assert res["nodes"] * res["gpus_per_node"] == 64  # published: 64 GPUs
    assert res["gres"] == "gpu:8" and "--signal=USR1@" in res["slurm_extra"]


@pytest.mark.parametrize("name", LOCKED)
def test_every_rule_resource_section_maps_to_slurm(name):
    cfg = experiment.load(REPO / name)
    for rule in cfg["resources"]:
        rule_resources(cfg["resources"], rule, distributed=(rule == "train"))
