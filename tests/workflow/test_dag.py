"""The Snakefile's DAG without running a job: the report rule depends on every step whose output it reads, a
missing rule file is an error, and a nested `--config` value (a string) reaches the rules with the schema's type."""

from __future__ import annotations

import re
import shutil

import pytest

from .conftest import REPO, snakemake, write_config

pytestmark = pytest.mark.workflow


def _rulegraph_edges(out: str) -> set[tuple[str, str]]:
    labels = dict(re.findall(r'(\d+)\[label = "([^"]+)"', out))
    return {(labels[a], labels[b]) for a, b in re.findall(r"(\d+) -> (\d+)", out)}


def test_report_depends_on_everything_it_reads(tmp_path, tiny_config):
    cfg = write_config(tmp_path / "tiny.yaml", tiny_config)
    out = snakemake(tmp_path, cfg, "--rulegraph", "--forceall").stdout
    into_report = {a for a, b in _rulegraph_edges(out) if b == "report"}
    # compression.json, the corpus and dataset manifests, metrics.jsonl (train) and the evaluations
    assert {"tokenizer_compression", "corpus_raw", "corpus_split", "dataset_stage", "train", "evaluate"} <= \
        into_report, into_report
    assert "export_gguf" not in out  # export.gguf is off by default: the default DAG has no export


def test_gguf_export_joins_the_default_target_when_asked(tmp_path, tiny_config):
    """export.gguf.enabled: results/<exp>/export/<last stage>.gguf from its final/ and the base tokenizer (whose
    pre-tokenizer an extended byte-level BPE declares), with the converter's pinned archive as an input."""
    cfg = write_config(tmp_path / "tiny.yaml", {**tiny_config, "export": {"gguf": {"enabled": True}}})
    out = snakemake(tmp_path, cfg, "-n", "--forceall", "--printshellcmds").stdout
    last = list(tiny_config["train"]["stages"])[-1]
    job = out[out.index("rule export_gguf:"):]
    job = job[:job.index("\n\n")]
    exp = tiny_config["experiment"]
    assert f"output: results/{exp}/export/{last}.gguf" in job, job
    for needed in (f"results/{exp}/train/{last}/final", f"results/{exp}/tokenizer/base",
                   "llama_cpp_python-0.3.36.tar.gz"):
        assert needed in job.split("input:")[1].split("\n")[0], job
    assert out.count("rule export_gguf:") == 1


def test_missing_rule_file_is_an_error(tmp_path, tiny_config):
    tree = tmp_path / "repo"
    tree.mkdir()
    shutil.copy(REPO / "Snakefile", tree / "Snakefile")
    shutil.copytree(REPO / "workflow", tree / "workflow")
    (tree / "workflow" / "rules" / "report.smk").unlink()
    cfg = write_config(tmp_path / "tiny.yaml", tiny_config)
    out = snakemake(tmp_path, cfg, "-n", check=False, snakefile=tree / "Snakefile")
    assert out.returncode != 0
    assert "missing rule file(s): workflow/rules/report.smk" in out.stdout + out.stderr


def test_nested_command_line_config_gets_the_schemas_types(tmp_path, tiny_config):
    """`snakemake --config dataset='{max_length: 64}'` (Snakemake hands nested values over as strings)."""
    cfg = write_config(tmp_path / "tiny.yaml", tiny_config)
    out = snakemake(tmp_path, cfg, "-n", "--forceall", "--printshellcmds", "--config",
                    "dataset={max_length: 64, num_bins: 3}", "train={defaults: {lr: 1e-3}}")
    assert "config key" not in out.stdout + out.stderr  # validated: "64" and "1e-3" became numbers
    out = snakemake(tmp_path, cfg, "-n", "--config", "dataset={max_length: lots}", check=False)
    assert out.returncode != 0
    assert "config key dataset.max_length: 'lots' is not of type 'integer'" in out.stdout + out.stderr
