"""``gaokao``: GAOKAO-Bench, ``data/Multiple-choice_Questions/<years>_<Subject>.json`` (the layout ColossalEval
reads; the current release calls the folder ``Data/Objective_Questions``) =
{"keywords": ..., "example": [{"question", "answer": [...], "index", ...}]}; the options are inside the question
text."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from cpt.core.errors import EvalError
from cpt.evaluate.formats.base import LETTERS, Benchmark, Format, Question, Subject

_GAOKAO_OPTION = re.compile(r"([A-G])(?:\.|．|、|\s*[:：])")
# ColossalEval's option pattern ("A. ", "A．", "A."): the 4-choice rule reads the options with it
_COLOSSALEVAL_OPTION = re.compile(r"([A-Z])(?:\. |．|\.)")
FOLDERS = ("data/Multiple-choice_Questions", "Data/Objective_Questions", "Multiple-choice_Questions",
           "Objective_Questions")


def gaokao_letters(question: str, pattern: re.Pattern = _GAOKAO_OPTION) -> str:
    """Consecutive option letters written in the question (A. / A． / A、), starting at A."""
    found = set(pattern.findall(question))
    out = ""
    for letter in LETTERS + "HIJKLMNOPQRSTUVWXYZ":
        if letter in found:
            out += letter
        else:
            break
    return out


def subject_of(file_name: str) -> str:
    """"2010-2022_Math_I_MCQs.json" -> "Math I MCQs" (the years and the extension dropped, "_" as spaces)."""
    stem = file_name[: -len(".json")]
    if re.match(r"^\d{4}-\d{4}_", stem):
        stem = stem.split("_", 1)[1]
    return stem.replace("_", " ")


def multiple_choice_dir(root: Path) -> Path:
    for cand in [root / f for f in FOLDERS] + [root]:
        if cand.is_dir() and any(cand.glob("*.json")):
            return cand
    raise EvalError(f"{root}: no GAOKAO-Bench multiple-choice files ({' or '.join(FOLDERS[:2])}/*.json)")


def load_gaokao(path: str | os.PathLike, name: str = "gaokao", four_choice_only: bool = True) -> Benchmark:
    """GAOKAO-Bench's multiple-choice files.

    four_choice_only (the published protocol): only ColossalEval's scored files (cpt.evaluate.protocol
    GAOKAO_SCORED), and in them only questions whose text has exactly the options A-D and whose answer is one of
    them; every question left out is counted in `excluded`. Otherwise: every file's single-answer questions
    (multi-answer and multi-blank ones counted in `skipped`)."""
    from cpt.evaluate.protocol import GAOKAO_SCORED

    mc = multiple_choice_dir(Path(path))
    bench = Benchmark(name=name, format="gaokao", language="zh")
    for f in sorted(mc.glob("*.json")):
        bench.files.append(str(f))
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise EvalError(f"{f}:{exc.lineno}: not JSON ({exc.msg})") from None
        if not isinstance(data, dict) or not isinstance(data.get("example"), list):
            raise EvalError(f"{f}: expected an object with an 'example' list (GAOKAO-Bench layout)")
        subject = subject_of(f.name)
        if four_choice_only and subject not in GAOKAO_SCORED:
            bench.excluded[f"file {subject} (not a 4-choice single-answer file)"] += len(data["example"])
            continue
        sub = Subject(subject)
        for k, ex in enumerate(data["example"]):
            where = f"{f}:example[{k}]"
            if not isinstance(ex, dict):
                raise EvalError(f"{where}: expected an object with question and answer")
            answer = ex.get("answer")
            if isinstance(answer, str):
                answer = [answer]
            question = str(ex.get("question", ""))
            if four_choice_only:
                ok = (isinstance(answer, list) and len(answer) == 1 and str(answer[0]).strip() in tuple("ABCD")
                      and gaokao_letters(question, _COLOSSALEVAL_OPTION) == "ABCD")
                if not ok:
                    bench.excluded[f"{subject}: not 4 options A-D with one answer"] += 1
                    continue
                letters = "ABCD"
            else:
                if not answer:
                    bench.skipped["no_label"] += 1
                    continue
                if len(answer) != 1 or len(str(answer[0]).strip()) != 1:
                    bench.skipped["multiple_answers"] += 1
                    continue
                letters = gaokao_letters(question)
                if len(letters) < 2:
                    bench.skipped["options_not_found"] += 1
                    continue
            a = str(answer[0]).strip().upper()
            if a not in letters:
                bench.skipped["label_not_an_option"] += 1
                continue
            sub.test.append(Question(subject, question.strip(), None, a, letters=letters,
                                     qid=f"{subject}/{ex.get('index', k)}", source_line=where))
        if sub.test:
            bench.subjects[subject] = sub
    if not bench.num_questions:
        raise EvalError(f"{mc}: no single-answer GAOKAO questions" + (" in the 4-choice files" if four_choice_only
                                                                     else ""))
    return bench


def instruction(language: str, subject: str) -> str:
    return ""


FORMAT = Format("gaokao", lambda path, name, split, four_choice_only=True: load_gaokao(
    path, name=name, four_choice_only=four_choice_only), instruction, default_shots=0, four_choice_only=True)
