"""``cmmlu``: CMMLU, ``{dev,test}/<subject>.csv`` with the header ``,Question,A,B,C,D,Answer`` (also the layout of
the idiom set)."""

from __future__ import annotations

import os
from pathlib import Path

from cpt.errors import EvalError
from cpt.evaluate.formats.base import (
    Benchmark, Format, Question, check_letter, csv_body, read_csv_rows, require_dir, subject_files,
)

def load_cmmlu(path: str | os.PathLike, name: str = "cmmlu", split: str = "test") -> Benchmark:
    """CMMLU release (also the layout of our idiom set): {dev,test}/<subject>.csv with header ,Question,A,B,C,D,Answer."""
    root = Path(path)
    if (root / "data" / split).is_dir() and not (root / split).is_dir():
        root = root / "data"
    require_dir(root / split, f"CMMLU {split}")
    bench = Benchmark(name=name, format="cmmlu", language="zh", split=split)
    for part, f, subject, questions in subject_files(bench, root, split, with_suffix=False):
        rows = read_csv_rows(f)
        if not rows:
            raise EvalError(f"{f}: empty file (expected the header ,Question,A,B,C,D,Answer)")
        header = [h.strip() for h in rows[0]]
        if header[1:7] != ["Question", "A", "B", "C", "D", "Answer"]:
            raise EvalError(f"{f}:1: header {rows[0]} is not ',Question,A,B,C,D,Answer' (CMMLU layout)")
        for i, where, row in csv_body(bench, f, rows[1:], 2):
            if len(row) != 7:
                raise EvalError(f"{where}: expected 7 columns (,Question,A,B,C,D,Answer), got {len(row)}")
            questions.append(Question(subject, row[1], row[2:6], check_letter(row[6], "ABCD", where),
                                      qid=f"{subject}/{part}/{row[0] or i}", source_line=where))
    if not bench.num_questions:
        raise EvalError(f"{root / split}: no <subject>.csv files with questions")
    return bench


def instruction(language: str, subject: str) -> str:
    return f"以下是关于{subject}的单项选择题，请直接给出正确答案的选项。"


FORMAT = Format("cmmlu", lambda path, name, split: load_cmmlu(path, name=name, split=split or "test"), instruction)
