"""`evaluate.backend: lm_eval`: lm-evaluation-harness (0.4.13) scores MMLU with its own task definition on the
local fixture, offline, and agrees with this project's scoring of the same prompt (prompt_style lm_eval, scoring
letter) question by question: the same predictions and log-likelihoods (the former benchmarks/lm_eval_agreement.py
check, on a tiny seeded model)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("lm_eval", reason="lm-eval is in requirements.lock; install it with install.sh")

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "eval"
sys.path.insert(0, str(FIX))

import tiny_models  # noqa: E402

from cpt.core.errors import EvalError  # noqa: E402
from cpt.evaluate import formats, run, scoring  # noqa: E402
from cpt.evaluate.lm_eval_backend import evaluate_with_harness  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tok, model, _ = tiny_models.tiny_tokenizer_and_model(tmp_path_factory.mktemp("tiny"), seed=3, kv_heads=2,
                                                         max_position_embeddings=512)
    return tok, model


def test_harness_mmlu_agrees_with_the_project(tiny, monkeypatch):
    tok, model = tiny
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    b = formats.load_benchmark("mmlu", FIX / "mmlu")
    theirs = evaluate_with_harness(model, tok, b, scoring.EvalSettings(shots=2, max_batch_size=8), progress=False)
    ours = scoring.evaluate_benchmark(model, tok, b, scoring.EvalSettings(shots=2, scoring="letter",
                                                                          prompt_style="lm_eval"), progress=False)
    assert theirs["backend"] == "lm_eval" and theirs["num_questions"] == ours["num_questions"] == b.num_questions
    mine = {r["id"]: r for r in ours["predictions"]}
    for r in theirs["predictions"]:
        assert r["pred"] == mine[r["id"]]["pred"]
        for letter in "ABCD":
            assert r["loglik"][letter] == pytest.approx(mine[r["id"]]["loglik"][letter], abs=1e-4)
    assert theirs["accuracy"] == pytest.approx(ours["accuracy"])


def test_backend_runs_through_the_benchmark_runner_and_refuses_other_formats(tiny, tmp_path):
    tok, model = tiny
    out = run.run_benchmarks(model, tok, {"mmlu": {"format": "mmlu", "path": str(FIX / "mmlu"), "shots": 1,
                                                   "limit_per_subject": 1},
                                          "gaokao": {"format": "gaokao", "path": str(FIX / "gaokao")}},
                             tmp_path, {"backend": "lm_eval"}, progress=False)
    assert out["mmlu"]["backend"] == "lm_eval" and out["mmlu"]["num_questions"] == 2
    assert out["gaokao"]["status"] == "not_run" and "no harness task for the format gaokao" in \
        out["gaokao"]["not_run_reason"]
    g = formats.load_benchmark("gaokao", FIX / "gaokao")
    with pytest.raises(EvalError, match="no harness task for the format 'gaokao'"):
        evaluate_with_harness(model, tok, g, scoring.EvalSettings(shots=0), progress=False)
