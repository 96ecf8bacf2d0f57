"""What every benchmark format shares: the parsed questions (`Question`, `Subject`, `Benchmark`), the `Format`
record a format module registers, and the readers of CSV / jsonl release files (file:line in every error)."""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from cpt.core.errors import EvalError

LETTERS = "ABCDEFG"

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
    # AGIEval ships its own demonstrations (few_shot_prompts.csv records: passage, question, options, label, ...);
    # the ColossalEval prompts render them as they are, `dev` holds those that parse as questions
    demonstrations: list[dict] | None = None


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
    # questions left out by the published protocol (reason -> count), e.g. AGIEval/GAOKAO's 4-choice rule; unlike
    # `skipped` (rows the format cannot score) these are valid questions, reported next to the score
    excluded: Counter = field(default_factory=Counter)

    @property
    def num_questions(self) -> int:
        return sum(len(s.test) for s in self.subjects.values())

    def language_of(self, subject: str) -> str:
        return self.subject_language.get(subject, self.language)



@dataclass(frozen=True)
class Format:
    """One benchmark file layout: how to load it and how it is prompted by default.

    load(path, name, split, four_choice_only) -> Benchmark (path None only when `needs_path` is false);
    instruction(language, subject display name) -> the prompt's first line; default_shots: the published few-shot
    count; combined: AGIEval's combined metric by default; four_choice_only: the published 4-choice restriction
    applies (AGIEval, GAOKAO); generative: scored on a generated answer (GSM), not on answer letters."""

    name: str
    load: Callable[..., "Benchmark"]
    instruction: Callable[[str, str], str]
    default_shots: int = 5
    default_split: str | None = None
    needs_path: bool = True
    combined: bool = False
    four_choice_only: bool | None = None  # None: the rule does not apply to this format
    generative: bool = False


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise EvalError(f"{path}: {what} directory not found; point the benchmark's `path` at the unpacked release")
    return path


def release_root(path, split: str, what: str) -> Path:
    """The folder holding the release's <split>/ directory: `path` itself, or its data/ (as the releases unpack)."""
    root = Path(path)
    if (root / "data" / split).is_dir() and not (root / split).is_dir():
        root = root / "data"
    require_dir(root / split, f"{what} {split}")
    return root


def csv_with_header(f: Path, header: str, fits: Callable[[list[str]], bool], layout: str) -> list[list[str]]:
    """The rows of a CSV file whose first row must be `header` (checked by `fits`); file:line errors otherwise."""
    rows = read_csv_rows(f)
    if not rows:
        raise EvalError(f"{f}: empty file (expected the header {header})")
    if not fits(rows[0]):
        raise EvalError(f"{f}:1: header {rows[0]} is not '{header}' ({layout} layout)")
    return rows


def csv_questions(bench: "Benchmark", f: Path, rows: list[list[str]], start: int, subject: str, part: str, *,
                  columns: int, question: int, answer: int, layout: str = "", id_col: int | None = None,
                  fixed_width: bool = True):
    """A four-choice Question per CSV row: row[question] the text, the four cells after it choices A-D,
    row[answer] the letter; rows have `columns` cells (at least that many unless `fixed_width`). The qid is
    <subject>/<part>/<row[id_col] or the line number>."""
    for i, where, row in csv_body(bench, f, rows, start):
        if len(row) != columns if fixed_width else len(row) < columns:
            what = f"{columns} columns" + (f" ({layout})" if layout else "")
            raise EvalError(f"{where}: expected {what if fixed_width else 'at least ' + what}, got {len(row)}")
        qid = (row[id_col] if id_col is not None else "") or i
        yield Question(subject, row[question], row[question + 1:question + 5],
                       check_letter(row[answer], "ABCD", where), qid=f"{subject}/{part}/{qid}", source_line=where)


def check_letter(ans: str, letters: str, where: str) -> str:
    a = ans.strip().upper()
    if len(a) != 1 or a not in letters:
        raise EvalError(f"{where}: answer {ans!r} is not one of {', '.join(letters)}")
    return a


def read_csv_rows(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8-sig", newline="") as f:
        return list(csv.reader(f))


def subject_from_file(name: str, split: str | None) -> str:
    stem = name[: -len(".csv")]
    if split and stem.endswith(f"_{split}"):
        stem = stem[: -len(f"_{split}")]
    return stem


def split_files(root: Path, split: str, with_suffix: bool) -> list[Path]:
    d = root / split
    if not d.is_dir():
        return []
    suffix = f"_{split}.csv" if with_suffix else ".csv"
    return sorted(p for p in d.iterdir() if p.name.endswith(suffix))


def subject_files(bench: Benchmark, root: Path, split: str, with_suffix: bool):
    """(part, file, subject, its dev or test list) for each CSV file of the dev split, then of `split`.

    Registers the subject and the file in `bench`. File names are <subject>_<part>.csv (with_suffix) or
    <subject>.csv."""
    for part, target in (("dev", "dev"), (split, "test")):
        for f in split_files(root, part, with_suffix):
            subject = subject_from_file(f.name, part if with_suffix else None)
            sub = bench.subjects.setdefault(subject, Subject(subject))
            bench.files.append(str(f))
            yield part, f, subject, getattr(sub, target)


def csv_body(bench: Benchmark, f: Path, rows: list[list[str]], start: int):
    """(line number, "file:line", row) of the rows numbered from `start`; blank rows are counted as empty_row."""
    for i, row in enumerate(rows, start=start):
        if not row or all(not c.strip() for c in row):
            bench.skipped["empty_row"] += 1
            continue
        yield i, f"{f}:{i}", row


def jsonl_body(bench: Benchmark, origin: str, text: str):
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
