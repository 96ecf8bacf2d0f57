"""Acceptance of the locked 7B tokenizer section: `cpt select-pieces` with it, on the embedded demo's Chinese TRAIN
split (built here by the real Snakefile), yields exactly the published 69,104 - 32,000 = 37,104 new pieces."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cpt.core.yamlio import read_yaml

from .conftest import REPO, snakemake

pytestmark = [pytest.mark.workflow, pytest.mark.slow]


def test_locked_7b_candidates_yield_exactly_37104_pieces_on_the_demo(tmp_path):
    snakemake(tmp_path, REPO / "config" / "config.yaml", "results/demo/corpus/train", "results/demo/tokenizer/base")
    res = tmp_path / "results" / "demo"
    langs = {name: c["lang"] for name, c in read_yaml(REPO / "config" / "config.yaml")["corpus"]["categories"].items()}
    zh = [res / "corpus" / "train" / f"{name}.jsonl" for name, lang in langs.items() if lang == "zh"]
    assert zh and all(f.is_file() for f in zh)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-m", "cpt.cli", "select-pieces",
                          "--config", str(REPO / "config" / "colossal-llama-2-7b.yaml"),
                          "--base", str(res / "tokenizer" / "base"), *[a for f in zh for a in ("--train", str(f))],
                          "--out", str(tmp_path / "pieces")], capture_output=True, text=True, env=env, timeout=1200)
    assert out.returncode == 0, out.stderr[-4000:]
    pieces = [json.loads(line)["piece"] for line in (tmp_path / "pieces" / "pieces.jsonl").open(encoding="utf-8")]
    assert len(pieces) == 37104 == len(set(pieces))
    report = json.loads((tmp_path / "pieces" / "candidates.json").read_text(encoding="utf-8"))
    assert report["target_vocab_size"] == 69104
    assert list(report["sources"]) == ["train", "gguf", "jieba"]  # the locked sources, in their priority order
