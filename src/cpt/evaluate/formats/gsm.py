"""``gsm``: GSM8K, ``test.jsonl`` (the release's grade_school_math/data/) with {"question", "answer"}; the answer
is the worked solution ending in "#### <number>". Scored on a greedy generated answer with the published 8-shot
chain-of-thought prompt of eight fixed worked examples (cpt.evaluate.gsm), never examples drawn from the data."""

from __future__ import annotations

import os
from pathlib import Path

from cpt.core.errors import EvalError
from cpt.evaluate.formats.base import Benchmark, Format, Question, Subject, jsonl_body

SUBJECT = "math"
FILES = ("test.jsonl", "grade_school_math/data/test.jsonl", "data/test.jsonl")


def test_file(path: str | os.PathLike) -> Path:
    p = Path(path)
    if p.is_file():
        return p
    for rel in FILES:
        if (p / rel).is_file():
            return p / rel
    raise EvalError(f"{p}: no GSM8K test.jsonl (looked for {', '.join(FILES)}; the release's "
                    f"grade_school_math/data/)")


def load_gsm(path: str | os.PathLike, name: str = "gsm") -> Benchmark:
    """The GSM8K test split; a record without a "#### <number>" final answer is an error naming its line."""
    from cpt.evaluate.gsm import gold_answer

    f = test_file(path)
    bench = Benchmark(name=name, format="gsm", language="en")
    bench.files.append(str(f))
    sub = Subject(SUBJECT)
    for i, where, rec in jsonl_body(bench, str(f), f.read_text(encoding="utf-8")):
        if not isinstance(rec, dict) or not isinstance(rec.get("question"), str) \
                or not isinstance(rec.get("answer"), str):
            raise EvalError(f"{where}: expected {{\"question\": str, \"answer\": str}} (GSM8K layout)")
        if gold_answer(rec["answer"]) is None:
            raise EvalError(f"{where}: the answer has no final '#### <number>' line")
        sub.test.append(Question(SUBJECT, rec["question"], None, rec["answer"], letters="", qid=f"{SUBJECT}/{i}",
                                 source_line=where))
    if not sub.test:
        raise EvalError(f"{f}: no GSM8K questions")
    bench.subjects[SUBJECT] = sub
    return bench


def instruction(language: str, subject: str) -> str:
    return ""


FORMAT = Format("gsm", lambda path, name, split: load_gsm(path, name=name), instruction, default_shots=8,
                generative=True)
