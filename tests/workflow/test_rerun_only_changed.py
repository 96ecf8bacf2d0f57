"""Snakemake reruns exactly what a config change affects (acceptance of the versioning step).

After one complete run of the tiny experiment, a dry run with a changed config must plan:
- replay's learning rate changed -> replay training, its evaluation and the report; nothing else;
- dataset max_length changed -> every dataset and every training stage (and what follows them); not the corpus,
  the tokenizers or the initialised model.
Plans are read from the dry run's job list (each job's `output:` line), not from timing.
"""

from __future__ import annotations

import copy
import importlib.util
import re
import shutil
from pathlib import Path

import pytest
import yaml

# the workflow tests' harness (tests/workflow/conftest.py), loaded by path: `import conftest` is ambiguous
_spec = importlib.util.spec_from_file_location("workflow_harness", Path(__file__).with_name("conftest.py"))
_harness = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_harness)
REPO, TINY, snakemake, write_config = _harness.REPO, _harness.TINY, _harness.snakemake, _harness.write_config

pytestmark = [pytest.mark.workflow, pytest.mark.slow]
NEEDED_RULES = ("tokenizer", "model", "dataset", "train", "evaluate", "report")


def planned_jobs(out: str) -> list[tuple[str, list[str]]]:
    """(rule, outputs) of every job a `snakemake -n` run lists."""
    jobs, rule = [], None
    for line in out.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):", line)
        if m:
            rule = m.group(1)
            jobs.append((rule, []))
            continue
        m = re.match(r"^\s+output: (.+)$", line)
        if m and rule is not None and jobs:
            jobs[-1][1].extend(p.strip() for p in m.group(1).split(","))
    return jobs


def _under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


@pytest.fixture(scope="module")
def completed_run(tmp_path_factory):
    if not TINY.exists():
        pytest.skip("tests/workflow/tiny.yaml (the tiny test experiment) is not there yet")
    missing = [r for r in NEEDED_RULES if not (REPO / "workflow" / "rules" / f"{r}.smk").exists()]
    if missing:
        pytest.skip(f"the workflow has no rule files for {', '.join(missing)} yet")
    cfg = yaml.safe_load(TINY.read_text(encoding="utf-8"))
    # the initialised model extends the base model itself (not a trained stage), so that it depends on no dataset
    cfg.setdefault("model", {}).setdefault("init", {})["from_stage"] = None
    wd = tmp_path_factory.mktemp("rerun")
    shutil.copytree(REPO / "config", wd / "config")
    path = write_config(wd / "exp.yaml", cfg)
    snakemake(wd, path)
    again = snakemake(wd, path, "-n")
    assert "Nothing to be done" in again.stdout + again.stderr
    return wd, cfg


def _plan(wd: Path, cfg: dict) -> tuple[list[tuple[str, list[str]]], dict]:
    path = write_config(wd / "changed.yaml", cfg)
    r = snakemake(wd, path, "-n")
    return planned_jobs(r.stdout + r.stderr), cfg


def test_changing_replay_lr_reruns_replay_its_evaluation_and_the_report(completed_run):
    wd, base_cfg = completed_run
    cfg = copy.deepcopy(base_cfg)
    stages = list(cfg["train"]["stages"])
    replay = stages[-1]
    old = cfg["train"]["stages"][replay].get("lr", cfg["train"].get("defaults", {}).get("lr", 1.0e-4))
    cfg["train"]["stages"][replay]["lr"] = float(old) * 0.5
    jobs, _ = _plan(wd, cfg)
    root = f"results/{cfg['experiment']}"
    rules = {rule for rule, _ in jobs if rule != "all"}
    outputs = [o for _, outs in jobs for o in outs]
    assert f"{root}/train/{replay}/final" in outputs, jobs
    for stage in stages[:-1]:
        assert f"{root}/train/{stage}/final" not in outputs, f"stage {stage} should not rerun: {jobs}"
        assert not any(_under(o, f"{root}/evaluate/{stage}") for o in outputs), f"evaluation of {stage} reran"
    assert rules <= {"train"} | {r for r in rules if r.startswith(("evaluate", "report"))}, rules
    assert any(r.startswith("report") for r in rules), f"the report should rerun: {rules}"
    assert any(r.startswith("evaluate") for r in rules), f"replay's evaluation should rerun: {rules}"
    assert [o for o in outputs if _under(o, f"{root}/train")] == [f"{root}/train/{replay}/final"]


def test_changing_dataset_max_length_reruns_datasets_and_training_only(completed_run):
    wd, base_cfg = completed_run
    cfg = copy.deepcopy(base_cfg)
    cfg["dataset"]["max_length"] = int(cfg["dataset"]["max_length"]) // 2
    jobs, _ = _plan(wd, cfg)
    root = f"results/{cfg['experiment']}"
    outputs = [o for _, outs in jobs for o in outs]
    stages = list(cfg["train"]["stages"])
    for stage in stages:
        assert f"{root}/dataset/{stage}" in outputs, f"dataset {stage} should rerun: {jobs}"
        assert f"{root}/train/{stage}/final" in outputs, f"training {stage} should rerun: {jobs}"
    for untouched in ("corpus", "clean", "tokenizer", "model"):
        assert not any(_under(o, f"{root}/{untouched}") for o in outputs), f"{untouched} reran: {jobs}"
