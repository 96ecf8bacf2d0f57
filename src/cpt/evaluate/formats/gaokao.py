"""``gaokao``: GAOKAO-Bench, ``data/Multiple-choice_Questions/<years>_<Subject>.json`` =
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


def gaokao_letters(question: str) -> str:
    """Consecutive option letters written in the question (A. / A． / A、), starting at A."""
    found = set(_GAOKAO_OPTION.findall(question))
    out = ""
    for letter in LETTERS:
        if letter in found:
            out += letter
        else:
            break
    return out


def load_gaokao(path: str | os.PathLike, name: str = "gaokao") -> Benchmark:
    """GAOKAO-Bench: <path>/data/Multiple-choice_Questions/*.json (or the folder itself). Questions with one
    answer letter are scored; multi-answer and multi-blank ones are counted in `skipped`."""
    root = Path(path)
    for cand in (root / "data" / "Multiple-choice_Questions", root / "Multiple-choice_Questions", root):
        if cand.is_dir() and any(cand.glob("*.json")):
            mc = cand
            break
    else:
        raise EvalError(f"{root}: no GAOKAO-Bench Multiple-choice_Questions/*.json files")
    bench = Benchmark(name=name, format="gaokao", language="zh")
    for f in sorted(mc.glob("*.json")):
        bench.files.append(str(f))
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise EvalError(f"{f}:{exc.lineno}: not JSON ({exc.msg})") from None
        if not isinstance(data, dict) or "example" not in data:
            raise EvalError(f"{f}: expected an object with an 'example' list (GAOKAO-Bench layout)")
        stem = f.name[: -len(".json")]
        subject = stem.split("_", 1)[1] if re.match(r"^\d{4}-\d{4}_", stem) else stem
        sub = Subject(subject)
        for k, ex in enumerate(data["example"]):
            where = f"{f}:example[{k}]"
            answer = ex.get("answer")
            if isinstance(answer, str):
                answer = [answer]
            if not answer:
                bench.skipped["no_label"] += 1
                continue
            if len(answer) != 1 or len(str(answer[0]).strip()) != 1:
                bench.skipped["multiple_answers"] += 1
                continue
            question = str(ex.get("question", ""))
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
        raise EvalError(f"{mc}: no single-answer GAOKAO questions")
    return bench


def instruction(language: str, subject: str) -> str:
    return ""


FORMAT = Format("gaokao", lambda path, name, split: load_gaokao(path, name=name), instruction, default_shots=0)
