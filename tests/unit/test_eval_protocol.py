"""The published evaluation protocol (ColossalEval, as the Colossal-LLaMA-2 7B and 13B tables were scored), rule by
rule on fixtures in the public layouts: AGIEval / GAOKAO's 4-choice rule with counted exclusions, the combined
metric, the letter scored on both answer cues, GSM8K's 8-shot prompt and answer rule, C-Eval's val split, the
literal prompts of both ColossalEval releases, "not run" and plan-time path errors."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "eval"
sys.path.insert(0, str(FIX))

import tiny_models  # noqa: E402

from cpt.core.errors import ConfigError, EvalError  # noqa: E402
from cpt.evaluate import formats, gsm, prompts, run, scoring  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_models.tiny_tokenizer_and_model(tmp_path_factory.mktemp("tiny"), seed=11, kv_heads=2,
                                                max_position_embeddings=4096)


# ------------------------------------------------------------------------------------------------ 4-choice rule
def test_agieval_scores_only_the_four_choice_tasks_and_counts_the_rest():
    b = formats.load_benchmark("agieval", FIX / "agieval")  # the release folder: data/v1 + few_shot_prompts.csv
    assert sorted(b.subjects) == ["logiqa-en", "logiqa-zh", "sat-en"]
    assert b.num_questions == 5
    # every question of the fixture is accounted for: scored, or excluded with its reason
    assert b.excluded == {"task lsat-ar (5 options)": 2, "task jec-qa-kd (several answers)": 2,
                          "task math (no options (cloze))": 1, "sat-en: not 4 options A-D with one answer": 1}
    assert all(q.letters == "ABCD" and q.answer in "ABCD" for s in b.subjects.values() for q in s.test)
    assert [q.question for q in b.subjects["sat-en"].test] == ["The passage mainly describes"]  # not the 3-option one


def test_gaokao_scores_only_the_four_choice_files_and_counts_the_rest(tmp_path):
    b = formats.load_benchmark("gaokao", FIX / "gaokao")
    assert list(b.subjects) == ["English MCQs", "Biology MCQs"]
    assert [q.answer for q in b.subjects["Biology MCQs"].test] == ["D", "B"]
    assert b.excluded == {"Biology MCQs: not 4 options A-D with one answer": 1,  # the A-E question
                          "file Physics MCQs (not a 4-choice single-answer file)": 2,
                          "file English Fill in Blanks (not a 4-choice single-answer file)": 1}
    # the current release's folder name reads the same
    renamed = tmp_path / "GAOKAO-Bench" / "Data" / "Objective_Questions"
    shutil.copytree(FIX / "gaokao" / "data" / "Multiple-choice_Questions", renamed)
    again = formats.load_benchmark("gaokao", tmp_path / "GAOKAO-Bench")
    assert again.excluded == b.excluded and again.num_questions == b.num_questions


def test_excluded_counts_reach_the_result(tiny, tmp_path):
    tok, model, _ = tiny
    out = run.run_benchmarks(model, tok, {"gaokao": {"format": "gaokao", "path": str(FIX / "gaokao")}}, tmp_path,
                             {"prompt_style": "colossaleval"}, progress=False)
    assert out["gaokao"]["excluded_total"] == 4 and out["gaokao"]["num_questions"] == 3
    full = json.loads((tmp_path / "gaokao.json").read_text(encoding="utf-8"))
    assert full["excluded"]["file Physics MCQs (not a 4-choice single-answer file)"] == 2


# ------------------------------------------------------------------------------------------------ prompts
def _block(head, q, choices, cue):
    return f"{head}{q}\nA. {choices[0]}\nB. {choices[1]}\nC. {choices[2]}\nD. {choices[3]}\n{cue}"


def test_colossaleval_mmlu_prompts_of_both_releases():
    b = formats.load_benchmark("mmlu", FIX / "mmlu")
    sub = b.subjects["high_school_us_history"]
    q = sub.test[0]
    ex = [_block("Question: ", d.question, d.choices, "Answer: ") + d.answer for d in sub.dev]
    query = _block("Question: ", q.question, q.choices, "Answer: ")
    dec = prompts.build_parts(b, sub, q, 5, "colossaleval").text()
    assert dec == "\n\n".join(["The following are multiple choice questions (with answers) about High School US "
                               "History."] + ex + [query])
    sep = prompts.build_parts(b, sub, q, 5, "colossaleval-2023-09").text()
    assert sep == "\n\n".join(["The following are answers for questions in an exam."] + ex + [query])
    zero = prompts.build_parts(b, sub, q, 0, "colossaleval").text()
    assert zero == ("The following is a single-choice question on High School US History. Answer the question by "
                    "replying A, B, C or D.\n\n" + query)
    # too long: ColossalEval keeps the FIRST examples
    parts = prompts.build_parts(b, sub, q, 5, "colossaleval")
    assert parts.text(1) == "\n\n".join([parts.instruction, ex[0], query])


def test_colossaleval_cmmlu_and_ceval_name_the_subject_in_chinese():
    c = formats.load_benchmark("cmmlu", FIX / "cmmlu")
    sub = c.subjects["chinese_food_culture"]
    text = prompts.build_parts(c, sub, sub.test[0], 1, "colossaleval").text()
    d, q = sub.dev[0], sub.test[0]
    assert text == ("以下是关于中国饮食文化的单项选择题，请直接给出正确答案的选项。\n\n" + _block("题目：", d.question, d.choices, "答案：")
                    + d.answer + "\n\n" + _block("题目：", q.question, q.choices, "答案："))
    e = formats.load_benchmark("ceval", FIX / "ceval")  # the val split, scored with dev examples
    assert e.split == "val"
    sub = e.subjects["computer_network"]
    assert sub.test and all(x.qid.startswith("computer_network/val/") for x in sub.test) and sub.dev
    text = prompts.build_parts(e, sub, sub.test[0], 5, "colossaleval").text()
    assert text.startswith("以下是中国关于计算机网络考试的单项选择题，请选出其中的正确答案。\n\n题目：")
    assert text.count("\n答案：") == len(sub.dev) + 1 and text.endswith("\n答案：") and "\n\n\n" not in text


def test_colossaleval_agieval_demonstrations_and_questions():
    b = formats.load_benchmark("agieval", FIX / "agieval")
    en = b.subjects["logiqa-en"]
    text = prompts.build_parts(b, en, en.test[1], 5, "colossaleval").text()
    assert text == (
        "Here are the answers for the problems in the exam.\n\n"
        "Question: All birds have feathers. A robin is a bird. Which one of the following follows?\n"
        "Choose from the following options: (A)A robin has feathers (B)A robin has no feathers (C)Some birds are "
        "robins only (D)None of the above\nAnswer: A\n\n"
        "Question:  No fish can walk. A trout is a fish. So:\n"
        "Choose from the following options: (A)a trout walks (B)a trout cannot walk (C)a trout is not a fish "
        "(D)fish walk\nAnswer: B\n\n"
        "Question: If it snows, the school closes. The school is open. So: Choose from the following options: "
        "(A)it snows (B)it does not snow (C)the school is closed (D)it rains\nAnswer: ")
    zh = b.subjects["logiqa-zh"]
    first = prompts.build_parts(b, zh, zh.test[0], 1, "colossaleval-2023-09").text()
    assert first == ("以下是考试中各个问题的答案。\n\n问题： 所有人都会死，苏格拉底是人，所以：\n从以下选项中选择：(A)苏格拉底会死 (B)苏格拉底不会死 "
                     "(C)不确定 (D)以上都不对\n答案：A\n\n\n所有的鸟都会飞。企鹅是鸟。\n\n问题：根据以上陈述，可以推出： 从以下选项中选择：(A)企鹅会飞 "
                     "(B)企鹅不会飞 (C)有的鸟不会飞 (D)以上都不对\n答案：")


def test_colossaleval_gaokao_and_gsm_prompts():
    g = formats.load_benchmark("gaokao", FIX / "gaokao")
    s = g.subjects["Biology MCQs"]
    assert prompts.build_parts(g, s, s.test[0], 0, "colossaleval").text() == s.test[0].question.strip() + "\n答案："
    m = formats.load_benchmark("gsm", FIX / "gsm")
    s = m.subjects["math"]
    q = s.test[0]
    text = prompts.build_parts(m, s, q, 8, "colossaleval").text()
    blocks = text.split("\n\n")
    assert len(blocks) == 9 and blocks[-1] == f"Question: {q.question}\nLet's think step by step\n"
    for block, answer in zip(blocks[:8], ("20", "817", "28", "20800", "4", "84", "15", "350")):
        lines = block.split("\n")
        assert lines[0].startswith("Question: ") and lines[1] == "Let's think step by step"
        assert lines[-1] == f"The answer is {answer}" and gsm.extract_answer(block.split("\n", 2)[2]) == int(answer)


# ------------------------------------------------------------------------------------------------ scoring
def test_letter_score_is_the_larger_of_both_cue_tokens(tiny):
    """ColossalEval scores a letter by max(logit of the last token of "Answer: X", of "答案：X") for every benchmark;
    checked against a plain forward pass of the literal prompt."""
    tok, model, _ = tiny
    b = formats.load_benchmark("mmlu", FIX / "mmlu")
    res = scoring.evaluate_benchmark(model, tok, b, scoring.EvalSettings(shots=1, prompt_style="colossaleval"),
                                     progress=False)
    en, zh = scoring.letter_token_ids(tok, "en"), scoring.letter_token_ids(tok, "zh")
    assert en != zh
    for rec in res["predictions"]:
        sub = b.subjects[rec["subject"]]
        q = next(x for x in sub.test if x.qid == rec["id"])
        text = prompts.build_parts(b, sub, q, 1, "colossaleval").text(rec["shots"])
        with torch.no_grad():
            row = model(torch.tensor([tok(text)["input_ids"]])).logits[0, -1]
        want = {L: max(float(row[en[L]]), float(row[zh[L]])) for L in "ABCD"}
        assert rec["logits"] == pytest.approx(want, abs=1e-3)
        assert rec["pred"] == max("ABCD", key=lambda L: (want[L], -ord(L)))


def test_combined_metric_counts_either_logits_or_generated_letter(tiny):
    tok, model, _ = tiny
    b = formats.load_benchmark("agieval", FIX / "agieval")
    res = scoring.evaluate_benchmark(model, tok, b, scoring.EvalSettings(
        shots=2, combined=True, max_new_tokens=8, prompt_style="colossaleval"), progress=False)
    ok = 0
    for rec in res["predictions"]:
        letter = scoring.first_letter(rec["generated"], "ABCD")
        assert rec["generated_letter"] == letter
        assert rec["correct_combined"] == (rec["pred"] == rec["answer"] or letter == rec["answer"])
        ok += rec["correct_combined"]
    assert res["correct"] == res["combined"]["correct"] == ok
    assert res["accuracy"] == pytest.approx(100.0 * ok / 5) and res["excluded_total"] == 6


@pytest.mark.parametrize("generation, reference, correct", [
    ("He makes 20*40=$800 per week\nThe answer is 20,800.", "#### 20800", True),  # commas, trailing "."
    ("In 2006, 30/3*2=20 kids came. So 25 in all", "#### 20", True),  # the last "= number" wins over the last one
    ("The answer is 7\n\nQuestion: what is 8?\nThe answer is 8", "#### 7", True),  # cut at the blank line
    ("The answer is 5.00", "#### 5", True),  # ".00" dropped
    ("The answer is 2.5", "#### 2.5", True),
    ("The answer is 01", "#### 1", False),  # not a number literal
    ("x = 3 and the answer is 4", "#### 4", True),  # only the text after "answer is"
    ("The answer is -3", "#### -3", True),
    ("no digits at all", "#### 0", False),
    ("The answer is 1,250", "#### 1,250", True),  # gold commas removed too
    ("The answer is $36.", "#### 36", True),
])
def test_gsm_answer_rule(generation, reference, correct):
    assert gsm.is_correct(generation, reference) is correct


def test_gsm_generated_answers_end_to_end(tiny, tmp_path):
    tok, model, _ = tiny
    m = formats.load_benchmark("gsm", FIX / "gsm")
    res = scoring.evaluate_benchmark(model, tok, m, scoring.EvalSettings(shots=8, max_new_tokens=12,
                                                                         prompt_style="colossaleval"), progress=False)
    assert res["num_questions"] == 3 and res["scoring"] == "generated"
    golds = [7, 36, 1250]
    for rec, gold in zip(res["predictions"], golds):
        assert rec["answer"] == gold and rec["shots"] == 8
        assert rec["correct"] == gsm.is_correct(rec["generated"], f"#### {gold}")
        assert rec["pred"] == gsm.extract_answer(rec["generated"])
    bad = tmp_path / "test.jsonl"
    bad.write_text('{"question": "q", "answer": "7"}\n{"question": "q", "answer": "no final line"}\n')
    with pytest.raises(EvalError, match=r"test.jsonl:1: the answer has no final '#### <number>' line"):
        formats.load_benchmark("gsm", tmp_path)


# ------------------------------------------------------------------------------------------------ paths
def test_benchmark_without_path_is_reported_not_run(tiny, tmp_path):
    tok, model, _ = tiny
    benches = {"gsm": {"format": "gsm", "shots": 8}, "ceval": {"format": "ceval", "path": None}}
    out = run.run_benchmarks(model, tok, benches, tmp_path, {}, progress=False)
    for name in benches:
        assert out[name]["status"] == "not_run"
        assert out[name]["not_run_reason"] == f"not run: no data path (evaluate.benchmarks.{name}.path)"
    assert list(json.loads((tmp_path / "benchmarks.json").read_text())) == ["gsm", "ceval"]


def test_wrong_path_is_one_plan_time_error_naming_the_key(tmp_path):
    cfg = {"evaluate": {"benchmarks": {
        "mmlu": {"format": "mmlu", "path": str(tmp_path / "nowhere")},
        "cmmlu": {"format": "cmmlu", "path": str(FIX / "mmlu")},  # MMLU data given as CMMLU
        "ceval": {"format": "ceval", "path": None},  # no path: fine, reported as not run
        "agieval": {"format": "agieval", "path": str(FIX / "agieval")}}}}
    with pytest.raises(ConfigError) as e:
        run.check_data_paths(cfg, "my.yaml")
    msg = str(e.value)
    assert "my.yaml: config key evaluate.benchmarks.mmlu.path: " in msg and "does not exist" in msg
    assert "config key evaluate.benchmarks.cmmlu.path: " in msg and "is not cmmlu data" in msg
    assert "ceval" not in msg and "agieval" not in msg
    # a data root: one folder per benchmark name
    run.check_data_paths({"evaluate": {"data_root": str(FIX), "benchmarks": {"gsm": {"format": "gsm"}}}})
    with pytest.raises(ConfigError, match=r"evaluate.data_root \(its folder mmlu2/"):
        run.check_data_paths({"evaluate": {"data_root": str(FIX), "benchmarks": {"mmlu2": {"format": "mmlu"}}}})
