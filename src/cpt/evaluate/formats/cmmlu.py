"""``cmmlu``: CMMLU, ``{dev,test}/<subject>.csv`` with the header ``,Question,A,B,C,D,Answer`` (also the layout of
the idiom set)."""

from __future__ import annotations

import os

from cpt.core.errors import EvalError
from cpt.evaluate.formats.base import (
    Benchmark,
    Format,
    csv_questions,
    csv_with_header,
    release_root,
    subject_files,
)


def load_cmmlu(path: str | os.PathLike, name: str = "cmmlu", split: str = "test") -> Benchmark:
    """CMMLU release (also the layout of our idiom set): {dev,test}/<subject>.csv with header ,Question,A,B,C,D,Answer."""
    root = release_root(path, split, "CMMLU")
    bench = Benchmark(name=name, format="cmmlu", language="zh", split=split)
    for part, f, subject, questions in subject_files(bench, root, split, with_suffix=False):
        rows = csv_with_header(f, ",Question,A,B,C,D,Answer",
                               lambda h: [x.strip() for x in h][1:7] == ["Question", "A", "B", "C", "D", "Answer"],
                               "CMMLU")
        questions.extend(csv_questions(bench, f, rows[1:], 2, subject, part, columns=7, question=1, answer=6,
                                       layout=",Question,A,B,C,D,Answer", id_col=0))
    if not bench.num_questions:
        raise EvalError(f"{root / split}: no <subject>.csv files with questions")
    return bench


def instruction(language: str, subject: str) -> str:
    return f"以下是关于{subject}的单项选择题，请直接给出正确答案的选项。"


FORMAT = Format("cmmlu", lambda path, name, split: load_cmmlu(path, name=name, split=split or "test"), instruction)
