"""``mmlu``: the MMLU CSV release, ``data/{dev,val,test}/<subject>_{dev,val,test}.csv``; no header; columns
question,A,B,C,D,answer."""

from __future__ import annotations

import os
from pathlib import Path

from cpt.errors import EvalError
from cpt.evaluate.formats.base import (
    Benchmark, Format, Question, check_letter, csv_body, read_csv_rows, require_dir, subject_files,
)

def load_mmlu(path: str | os.PathLike, split: str = "test", name: str = "mmlu") -> Benchmark:
    """MMLU CSV release. `path` is the folder holding dev/ val/ test/ (the release's data/)."""
    root = Path(path)
    if (root / "data" / split).is_dir() and not (root / split).is_dir():
        root = root / "data"
    require_dir(root / split, f"MMLU {split}")
    bench = Benchmark(name=name, format="mmlu", language="en", split=split)
    for part, f, subject, questions in subject_files(bench, root, split, with_suffix=True):
        for i, where, row in csv_body(bench, f, read_csv_rows(f), 1):
            if len(row) != 6:
                raise EvalError(f"{where}: expected 6 columns (question,A,B,C,D,answer), got {len(row)}")
            questions.append(Question(subject, row[0], row[1:5], check_letter(row[5], "ABCD", where),
                                      qid=f"{subject}/{part}/{i}", source_line=where))
    if not bench.num_questions:
        raise EvalError(f"{root / split}: no <subject>_{split}.csv files with questions")
    return bench


def instruction(language: str, subject: str) -> str:
    return f"The following are multiple choice questions (with answers) about {subject}."


FORMAT = Format("mmlu", lambda path, name, split: load_mmlu(path, split=split or "test", name=name), instruction)
