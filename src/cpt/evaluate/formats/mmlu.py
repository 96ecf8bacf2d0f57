"""``mmlu``: the MMLU CSV release, ``data/{dev,val,test}/<subject>_{dev,val,test}.csv``; no header; columns
question,A,B,C,D,answer."""

from __future__ import annotations

import os

from cpt.core.errors import EvalError
from cpt.evaluate.formats.base import (
    Benchmark,
    Format,
    csv_questions,
    read_csv_rows,
    release_root,
    subject_files,
)


def load_mmlu(path: str | os.PathLike, split: str = "test", name: str = "mmlu") -> Benchmark:
    """MMLU CSV release. `path` is the folder holding dev/ val/ test/ (the release's data/)."""
    root = release_root(path, split, "MMLU")
    bench = Benchmark(name=name, format="mmlu", language="en", split=split)
    for part, f, subject, questions in subject_files(bench, root, split, with_suffix=True):
        questions.extend(csv_questions(bench, f, read_csv_rows(f), 1, subject, part, columns=6, question=0, answer=5,
                                       layout="question,A,B,C,D,answer"))
    if not bench.num_questions:
        raise EvalError(f"{root / split}: no <subject>_{split}.csv files with questions")
    return bench


def instruction(language: str, subject: str) -> str:
    return f"The following are multiple choice questions (with answers) about {subject}."


FORMAT = Format("mmlu", lambda path, name, split: load_mmlu(path, split=split or "test", name=name), instruction)
