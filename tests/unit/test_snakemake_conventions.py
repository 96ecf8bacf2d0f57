"""Snakemake's conventions (issue 26): `snakemake --lint` clean, `snakefmt --check` clean, the software environments
generated from the lock, the catalog's metadata, the rules' input functions (cpt.workflow.rule_inputs)."""

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import yaml

from cpt.workflow import software
from cpt.workflow.rule_inputs import RuleInputs

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SMK_FILES = ["Snakefile", *sorted(str(p.relative_to(REPO)) for p in (REPO / "workflow" / "rules").glob("*.smk"))]


def _env():
    return {**os.environ, "PYTHONPATH": str(REPO / "src")}


def test_snakefmt_check_passes():
    out = subprocess.run([str(BIN / "snakefmt"), "--check", *SMK_FILES], cwd=REPO, capture_output=True, text=True,
                         env=_env())
    assert out.returncode == 0, out.stdout + out.stderr
    assert len(SMK_FILES) >= 10


def test_snakemake_lint_is_clean():
    """Every lint is answered in the workflow itself (none documented as remaining: config/README.md)."""
    out = subprocess.run([str(BIN / "snakemake"), "--lint", "-n", "--cores", "1"], cwd=REPO, capture_output=True,
                         text=True, env=_env(), timeout=300)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert "Lints for" not in text and "in a good condition" in text, text


def test_software_environments_are_the_locks():
    assert software.main(["--root", str(REPO), "--check"]) == 0
    lock = software.lock_pins((REPO / "requirements.lock").read_text(encoding="utf-8"))
    env = yaml.safe_load((REPO / "workflow" / "envs" / "cpt.yaml").read_text(encoding="utf-8"))
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert sorted(pip + ["colossalai==0.5.0"]) == sorted(lock)
    assert "colossalai==0.5.0" in lock
    deploy = (REPO / "workflow" / "envs" / "cpt.post-deploy.sh").read_text(encoding="utf-8")
    assert "pip install --no-deps colossalai==0.5.0" in deploy and os.access(REPO / "workflow/envs/cpt.post-deploy.sh",
                                                                              os.X_OK)
    definition = (REPO / "workflow" / "envs" / "cpt.def").read_text(encoding="utf-8")
    torch = next(p for p in lock if p.startswith("torch=="))
    assert f"pip install --no-cache-dir {torch}" in definition
    assert "--no-deps -r /opt/cpt/requirements.lock" in definition
    # every rule names the environment; the Snakefile the image
    for rule_file in (REPO / "workflow" / "rules").glob("*.smk"):
        text = rule_file.read_text(encoding="utf-8")
        lines = [line.strip() for line in text.splitlines()]
        rules = sum(line.startswith("rule ") for line in lines)
        assert rules == sum(line == "CONDA_ENV" for line in lines), rule_file.name
    assert 'container: "workflow/envs/cpt.sif"' in (REPO / "Snakefile").read_text(encoding="utf-8")


def test_software_check_names_a_stale_file(tmp_path, capsys):
    (tmp_path / "requirements.lock").write_text("torch==2.13.0\ncolossalai==0.5.0\n", encoding="utf-8")
    assert software.main(["--root", str(tmp_path)]) == 0
    assert software.main(["--root", str(tmp_path), "--check"]) == 0
    (tmp_path / "requirements.lock").write_text("torch==2.14.0\ncolossalai==0.5.0\n", encoding="utf-8")
    assert software.main(["--root", str(tmp_path), "--check"]) == 1
    assert "workflow/envs/cpt.yaml: not what requirements.lock generates" in capsys.readouterr().err


def test_catalog_metadata_and_config_readme():
    meta = yaml.safe_load((REPO / ".snakemake-workflow-catalog.yml").read_text(encoding="utf-8"))
    assert set(meta["usage"]) >= {"mandatory-flags", "software-stack-deployment", "report"}
    assert meta["usage"]["software-stack-deployment"]["conda"] is True
    readme = (REPO / "config" / "README.md").read_text(encoding="utf-8")
    for name in sorted(p.name for p in (REPO / "config").glob("*.yaml")):
        assert f"`{name}`" in readme, f"config/README.md does not describe {name}"
    assert readme.count("**not tested**") == 2  # conda and Apptainer: said honestly


def test_rule_inputs_follow_the_config():
    from cpt.workflow.experiment import validate

    cfg = validate(yaml.safe_load((REPO / "config" / "config.yaml").read_text(encoding="utf-8")),
                   REPO / "workflow" / "schemas" / "config.schema.yaml")
    inputs = RuleInputs(cfg)
    L = inputs.layout
    assert inputs.corpus_split() == str(L.clean if cfg["clean"]["enabled"] else L.corpus_raw)
    stages = list(cfg["train"]["stages"])
    for stage in stages:
        w = SimpleNamespace(stage=stage)
        got = inputs.dataset(w)
        sft = got["data"] == str(L.corpus_sft)
        assert inputs.dataset_files(w) == ([str(L.corpus_sft / "train.jsonl")] if sft else [str(L.corpus_train)])
        assert set(inputs.dataset_replay_from(w).values()) == set(got["replay"])
        assert inputs.train_model(w) == str(L.model_source(cfg["train"]["stages"][stage]["init_from"]))
        assert inputs.train_checks(w) == []  # the demo's base model is built, not a local one
    ev = inputs.evaluate(SimpleNamespace(point="init"))
    assert ev["model"] == str(L.model_init) and ("heldout" in ev) == cfg["evaluate"]["bpb"]["enabled"]
