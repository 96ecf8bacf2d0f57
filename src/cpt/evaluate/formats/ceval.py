"""``ceval``: C-Eval, ``{dev,val,test}/<subject>_{dev,val,test}.csv`` with the header
``id,question,A,B,C,D,answer(,explanation)``; the public test split has no answers, so the scored split is ``val``
by default."""

from __future__ import annotations

import os
from pathlib import Path

from cpt.core.errors import EvalError
from cpt.evaluate.formats.base import (
    Benchmark,
    Format,
    csv_questions,
    csv_with_header,
    require_dir,
    subject_files,
)


def load_ceval(path: str | os.PathLike, split: str = "val", name: str = "ceval") -> Benchmark:
    """C-Eval release: {dev,val,test}/<subject>_<split>.csv, header id,question,A,B,C,D,answer(,explanation).

    The public test split carries no answers; scoring it raises (use split "val")."""
    root = Path(path)
    require_dir(root / split, f"C-Eval {split}")
    bench = Benchmark(name=name, format="ceval", language="zh", split=split)
    for part, f, subject, questions in subject_files(bench, root, split, with_suffix=True):
        rows = csv_with_header(f, "id,question,A,B,C,D,answer",
                               lambda h: [x.strip().lower() for x in h][:6] == ["id", "question", "a", "b", "c", "d"],
                               "C-Eval")
        header = [h.strip().lower() for h in rows[0]]
        if "answer" not in header:
            raise EvalError(f"{f}: split {part!r} has no answer column (the public C-Eval test split is "
                            f"unlabelled); score split 'val' instead")
        a_col = header.index("answer")
        questions.extend(csv_questions(bench, f, rows[1:], 2, subject, part, columns=a_col + 1, question=1,
                                       answer=a_col, id_col=0, fixed_width=False))
    if not bench.num_questions:
        raise EvalError(f"{root / split}: no <subject>_{split}.csv files with questions")
    return bench


def instruction(language: str, subject: str) -> str:
    return f"以下是中国关于{subject}考试的单项选择题，请选出其中的正确答案。"


FORMAT = Format("ceval", lambda path, name, split: load_ceval(path, split=split or "val", name=name), instruction,
                default_split="val")
