"""``agieval``: AGIEval, ``<task>.jsonl`` with passage, question, options ["(A)...", ...], label, answer, other;
optional ``few_shot_prompts.csv`` (the release's demonstrations)."""

from __future__ import annotations

import ast
import os
import re
from collections import Counter
from pathlib import Path

from cpt.core.errors import EvalError
from cpt.evaluate.formats.base import (
    LETTERS,
    Benchmark,
    Format,
    Question,
    Subject,
    jsonl_body,
    read_csv_rows,
    require_dir,
)

AGIEVAL_ZH = {"logiqa-zh", "jec-qa-kd", "jec-qa-ca", "gaokao-chinese", "gaokao-geography", "gaokao-history",
              "gaokao-biology", "gaokao-chemistry", "gaokao-physics", "gaokao-mathqa", "gaokao-mathcloze"}
_OPTION_PREFIX = re.compile(r"^\s*\(?([A-G])\)?\s*[.．:：]?\s*")


def agieval_language(task: str) -> str:
    return "zh" if task in AGIEVAL_ZH else "en"


def _agieval_label(rec: dict) -> str | list | None:
    label = rec.get("label")
    if isinstance(label, list):
        return label[0] if len(label) == 1 else label
    return label


def _read_agieval_demos(csv_path: Path, task: str) -> list[dict]:
    """few_shot_prompts.csv: a header of task names, then rows alternating a demonstration (a Python dict
    literal with passage/question/options/label/answer) and its explanation. Only the demonstrations are used."""
    rows = read_csv_rows(csv_path)
    if not rows:
        return []
    header = rows[0]
    key = "sat-en" if task == "sat-en-without-passage" else task
    if key not in header:
        return []
    col = header.index(key)
    demos = []
    for r, row in enumerate(rows[1:11], start=2):  # CSV records 2, 4, .., 10: the five demonstrations
        if (r % 2) != 0 or col >= len(row) or not row[col].strip():  # records 3, 5, ..: their explanations
            continue
        try:
            d = ast.literal_eval(row[col])
        except (ValueError, SyntaxError):
            raise EvalError(f"{csv_path}: record {r}, column {key!r}: not a demonstration literal") from None
        if isinstance(d, dict):
            if task == "sat-en-without-passage":
                d = {**d, "passage": None}
            demos.append(d)
    return demos


def demo_file(root: Path) -> Path | None:
    """few_shot_prompts.csv next to the task files, or one folder up (the public layout: data/v1/*.jsonl and
    data/few_shot_prompts.csv)."""
    for cand in (root / "few_shot_prompts.csv", root.parent / "few_shot_prompts.csv"):
        if cand.is_file():
            return cand
    return None


def load_agieval(path: str | os.PathLike, name: str = "agieval", four_choice_only: bool = True) -> Benchmark:
    """AGIEval release folder of <task>.jsonl files (e.g. data/v1/).

    four_choice_only (the published protocol): only ColossalEval's scored tasks (cpt.evaluate.protocol
    AGIEVAL_SCORED), and in them only questions with exactly the options A-D and one answer among them; every
    question left out is counted in `excluded` by reason. Otherwise: every task's single-answer multiple-choice
    questions (cloze and several-answer questions counted in `skipped`)."""
    from cpt.evaluate.protocol import AGIEVAL_LEFT_OUT, AGIEVAL_SCORED

    root = require_dir(Path(path), "AGIEval")
    for cand in (root, root / "v1", root / "data" / "v1"):  # the task folder, or the release holding data/v1
        if any(cand.glob("*.jsonl")):
            root = cand
            break
    files = sorted(root.glob("*.jsonl"))
    if not files:
        raise EvalError(f"{root}: no <task>.jsonl files (AGIEval layout: data/v1/<task>.jsonl)")
    bench = Benchmark(name=name, format="agieval", language="en")
    demo_csv = demo_file(root)
    for f in files:
        task = f.name[: -len(".jsonl")]
        bench.files.append(str(f))
        sub = Subject(task)
        rows = list(jsonl_body(bench, str(f), f.read_text(encoding="utf-8")))
        if four_choice_only and task not in AGIEVAL_SCORED:
            why = AGIEVAL_LEFT_OUT.get(task, "not a scored task")
            bench.excluded[f"task {task} ({why})"] += len(rows)
            continue
        for i, where, rec in rows:
            q = _agieval_question(rec, task, where, bench.skipped)
            if q is None:
                continue
            if four_choice_only and (q.letters != "ABCD" or q.answer not in "ABCD"):
                bench.excluded[f"{task}: not 4 options A-D with one answer"] += 1
                continue
            q.qid = f"{task}/{i}"
            sub.test.append(q)
        if sub.test:
            if demo_csv is not None:
                sub.demonstrations = _read_agieval_demos(demo_csv, task)
                demos = []
                for d in sub.demonstrations:
                    dq = _agieval_question(d, task, str(demo_csv), Counter())
                    if dq is not None:
                        demos.append(dq)
                sub.dev = demos
            bench.subjects[task] = sub
            bench.subject_language[task] = agieval_language(task)
    if demo_csv is not None:
        bench.files.append(str(demo_csv))
    if not bench.num_questions:
        raise EvalError(f"{root}: no single-answer multiple-choice AGIEval questions"
                        + (" in the 4-choice tasks" if four_choice_only else ""))
    return bench


def _agieval_question(rec: dict, task: str, where: str, skipped: Counter) -> Question | None:
    options = rec.get("options")
    if not options:
        skipped["not_multiple_choice"] += 1
        return None
    label = _agieval_label(rec)
    if isinstance(label, list) or (isinstance(label, str) and len(label.strip()) > 1):
        skipped["multiple_answers"] += 1
        return None
    if not label:
        skipped["no_label"] += 1
        return None
    letters = LETTERS[: len(options)]
    if len(options) > len(LETTERS):
        skipped["too_many_options"] += 1
        return None
    if str(label).strip().upper() not in letters:
        skipped["label_not_an_option"] += 1
        return None
    return Question(task, rec.get("question") or "", [str(o) for o in options], str(label).strip().upper(),
                    letters=letters, passage=rec.get("passage") or "", source_line=where)


def instruction(language: str, subject: str) -> str:
    return "以下是考试中各个问题的答案。" if language == "zh" else "Here are the answers for the problems in the exam."


FORMAT = Format("agieval", lambda path, name, split, four_choice_only=True: load_agieval(
    path, name=name, four_choice_only=four_choice_only), instruction, combined=True, four_choice_only=True)
