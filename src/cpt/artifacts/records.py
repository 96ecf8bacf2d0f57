"""jsonl records: streaming reader and validator for pretraining and SFT files.

Pretraining record: {"source": str, "target": str, "category": str}; source may be empty, target must be non-empty
after strip. SFT record: {"messages": [{"from": "human"|"assistant", "content": str}, ...], "category": optional str};
the conversation starts with a human turn, roles alternate, there is at least one assistant turn, no content is empty.

Every malformed line has a reason code (REASONS). With on_error="raise" the first one raises RecordError naming
file:line; with on_error="skip" it is counted under its reason in a RecordStats, which the caller writes into the
stage manifest (RecordStats.to_dict()). Nothing is dropped silently: blank lines are counted too (they are not
records and not errors). Files are read as bytes and decoded line by line, so a non-UTF-8 byte names its line.
Other jsonl files (training metrics, piece lists, held-out texts) are read with iter_json_objects (schema "object":
only "is a JSON object" is checked), so they share these reason names and file:line errors.

Strict on what JSON parsers let through: a key given twice in one object (orjson keeps the last silently) is
duplicate_key; a category label must be a name (letters, digits, `_.+-`, at most 100 characters, not starting with
a dot: no "", "../..", "<script>"), since it becomes a file name and report text; a line longer than
MAX_LINE_BYTES is line_too_long, read in bounded pieces (`iter_raw_lines`), never held whole. A non-regular file
(FIFO, socket, device, broken link) named like an input is an error listing them all, never skipped.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import orjson

from cpt.artifacts import inputs
from cpt.artifacts.inputs import expand_paths, iter_raw_lines, regular_files
from cpt.core.errors import RecordError

__all__ = ["expand_paths", "iter_raw_lines", "regular_files"]  # re-exported: the readers' one import

SCHEMAS = ("pretrain", "sft")
ROLES = ("human", "assistant")

# reason code -> what it means (also the help text of `cpt validate-records`)
REASONS: dict[str, str] = {
    "non_utf8": "the line is not valid UTF-8",
    "invalid_json": "the line is not valid JSON",
    "not_object": "the JSON value is not an object",
    "missing_field": "a required field is missing",
    "ill_typed": "a field has the wrong type",
    "empty_target": "target is empty or whitespace only",
    "empty_file": "the file holds no record",
    "missing_file": "the file cannot be opened",
    "empty_messages": "messages is an empty list",
    "unknown_role": "a turn's 'from' is not 'human' or 'assistant'",
    "empty_content": "a turn's content is empty or whitespace only",
    "first_not_human": "the conversation does not start with a human turn",
    "repeated_role": "two turns in a row from the same role",
    "no_assistant": "the conversation has no assistant turn",
    "duplicate_key": "a key is given twice in one JSON object (the last would silently win)",
    "bad_category": "the category label is empty or not a name (a path, markup, control characters)",
    "line_too_long": "the line is longer than MAX_LINE_BYTES (split the document into several records)",
    "not_regular": "an input named like a jsonl file is not a regular file (a FIFO, socket, device, broken link)",
}
CATEGORY = re.compile(r"\w[\w.+-]{0,99}")
_KEY_END = re.compile(rb'"[ \t\r\n]*:')

MAX_EXAMPLES = 20  # error messages kept in the stats (the counts are complete)


class _Bad(Exception):
    def __init__(self, reason: str, message: str):
        self.reason = reason
        self.message = message


@dataclass
class RecordStats:
    """Counts of one read: records kept, records skipped per reason, blank lines, files; a few example messages."""

    files: int = 0
    lines: int = 0
    records: int = 0
    blank_lines: int = 0
    skipped: Counter = field(default_factory=Counter)
    examples: list = field(default_factory=list)

    @property
    def num_skipped(self) -> int:
        return sum(self.skipped.values())

    def add_error(self, err: RecordError) -> None:
        self.skipped[err.reason] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(str(err))

    def merge(self, other: "RecordStats") -> "RecordStats":
        self.files += other.files
        self.lines += other.lines
        self.records += other.records
        self.blank_lines += other.blank_lines
        self.skipped.update(other.skipped)
        self.examples.extend(other.examples[: max(0, MAX_EXAMPLES - len(self.examples))])
        return self

    def to_dict(self) -> dict:
        return {
            "files": self.files,
            "lines": self.lines,
            "records": self.records,
            "blank_lines": self.blank_lines,
            "skipped": dict(sorted(self.skipped.items())),
            "skipped_total": self.num_skipped,
            "examples": list(self.examples),
        }


def _type_name(v: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer", float: "number",
            type(None): "null"}.get(type(v), type(v).__name__)


def check_object(obj: Any) -> None:
    """Raise _Bad if obj is not a JSON object (the only check of schema "object": jsonl of any shape)."""
    if not isinstance(obj, dict):
        raise _Bad("not_object", f"expected a JSON object, got {_type_name(obj)}")


def check_category(label: str) -> None:
    """Raise _Bad unless `label` is a category name (it becomes <label>.jsonl, a bucket's key, report text)."""
    if not CATEGORY.fullmatch(label):
        raise _Bad("bad_category", f"category {label[:40]!r} is not a name: use letters, digits and _.+- (at most "
                                   f"100 characters, not starting with a dot)")


def check_pretrain(obj: Any) -> None:
    """Raise _Bad if obj is not a valid pretraining record."""
    check_object(obj)
    for key in ("source", "target", "category"):
        if key not in obj:
            raise _Bad("missing_field", f"missing field {key!r} (a record needs source, target, category)")
        if not isinstance(obj[key], str):
            raise _Bad("ill_typed", f"field {key!r} must be a string, got {_type_name(obj[key])}")
    if not obj["target"].strip():
        raise _Bad("empty_target", "field 'target' is empty or whitespace only")
    check_category(obj["category"])


def check_sft(obj: Any) -> None:
    """Raise _Bad if obj is not a valid SFT conversation."""
    check_object(obj)
    if "messages" not in obj:
        raise _Bad("missing_field", "missing field 'messages'")
    msgs = obj["messages"]
    if not isinstance(msgs, list):
        raise _Bad("ill_typed", f"field 'messages' must be an array, got {_type_name(msgs)}")
    if "category" in obj and not isinstance(obj["category"], str):
        raise _Bad("ill_typed", f"field 'category' must be a string, got {_type_name(obj['category'])}")
    if "category" in obj:
        check_category(obj["category"])
    if not msgs:
        raise _Bad("empty_messages", "field 'messages' is an empty array")
    prev = None
    for i, turn in enumerate(msgs):
        where = f"messages[{i}]"
        if not isinstance(turn, dict):
            raise _Bad("ill_typed", f"{where} must be an object, got {_type_name(turn)}")
        for key in ("from", "content"):
            if key not in turn:
                raise _Bad("missing_field", f"{where} has no field {key!r}")
            if not isinstance(turn[key], str):
                raise _Bad("ill_typed", f"{where}.{key} must be a string, got {_type_name(turn[key])}")
        role = turn["from"]
        if role not in ROLES:
            raise _Bad("unknown_role", f"{where}.from is {role!r}; expected 'human' or 'assistant'")
        if not turn["content"].strip():
            raise _Bad("empty_content", f"{where}.content is empty or whitespace only")
        if i == 0 and role != "human":
            raise _Bad("first_not_human", f"{where} is from {role!r}; a conversation starts with a human turn")
        if role == prev:
            raise _Bad("repeated_role", f"{where}: two {role} turns in a row (messages[{i - 1}] and [{i}])")
        prev = role
    if not any(t["from"] == "assistant" for t in msgs):
        raise _Bad("no_assistant", "the conversation has no assistant turn")


CHECKS = {"pretrain": check_pretrain, "sft": check_sft, "object": check_object}


def _count_keys(obj: Any) -> int:
    if isinstance(obj, dict):
        return len(obj) + sum(_count_keys(v) for v in obj.values())
    if isinstance(obj, list):
        return sum(_count_keys(v) for v in obj)
    return 0


def _no_duplicates(pairs: list) -> dict:
    seen = set()
    for key, _ in pairs:
        if key in seen:
            raise _Bad("duplicate_key", f"key {key[:40]!r} is given twice in one object; the last would silently "
                                        f"win, keep one")
        seen.add(key)
    return dict(pairs)


def _parse(raw: bytes) -> Any:
    if len(raw) > inputs.MAX_LINE_BYTES:
        raise _Bad("line_too_long", f"the line is longer than {inputs.MAX_LINE_BYTES} bytes; split the document "
                                    f"into several records")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as uexc:
            raise _Bad("non_utf8", f"invalid UTF-8 byte {raw[uexc.start:uexc.start + 1]!r} at byte {uexc.start} "
                                   f"of the line; re-encode the file as UTF-8") from None
        raise _Bad("invalid_json", f"invalid JSON ({exc}); each line must hold one JSON object") from None
    # Every key ends with `"` then `:`; a duplicate leaves fewer keys parsed than such endings (one inside a string
    # only adds an ending). Only then is the line parsed again, slowly, to find the key.
    if isinstance(obj, (dict, list)) and len(_KEY_END.findall(raw)) > _count_keys(obj):
        json.loads(raw, object_pairs_hook=_no_duplicates)
    return obj


def check_line(raw: bytes, path: str | os.PathLike, lineno: int, schema: str = "pretrain",
               default_category: str | None = None) -> dict | None:
    """The record on one jsonl line (raw bytes, line number `lineno` of `path`); None for a blank line.

    A bad line raises RecordError(path, lineno, reason, "<reason>: <what is wrong>"). This is the one validation
    path: iter_located and the dataset stage's block tokenizers (cpt.dataset.packing, cpt.dataset.sft) all go through it.
    """
    if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    if not raw.strip():
        return None
    try:
        obj = _parse(raw)
        if default_category is not None and isinstance(obj, dict) and "category" not in obj:
            obj["category"] = default_category
        CHECKS[schema](obj)
    except _Bad as bad:
        raise RecordError(path, lineno, bad.reason, f"{bad.reason}: {bad.message}") from None
    return obj


def iter_lines(
    lines: Iterable[bytes],
    path: str | os.PathLike,
    first_line: int = 1,
    schema: str = "pretrain",
    on_error: str = "raise",
    stats: RecordStats | None = None,
    default_category: str | None = None,
) -> Iterator[tuple[int, dict]]:
    """Yield (line number, record) for the valid records among `lines` (raw bytes of `path` from line first_line).

    Counts lines, records, blank lines and skips (per reason) in `stats`; does not count files nor check for an
    empty file (iter_located does; a caller that reads a file in blocks does it once per file).
    """
    if schema not in CHECKS:
        raise ValueError(f"schema must be one of {tuple(CHECKS)}, got {schema!r}")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    stats = stats if stats is not None else RecordStats()
    for lineno, raw in enumerate(lines, first_line):
        stats.lines += 1
        try:
            obj = check_line(raw, path, lineno, schema, default_category)
        except RecordError as err:
            if on_error == "raise":
                raise
            stats.add_error(err)
            continue
        if obj is None:
            stats.blank_lines += 1
            continue
        stats.records += 1
        yield lineno, obj


def _open(path: str | os.PathLike):
    try:
        return open(path, "rb")
    except OSError as exc:
        raise RecordError(path, None, "missing_file", f"cannot open: {exc.strerror}") from None


def iter_json_objects(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for each non-blank line of one jsonl file of any schema.

    Same reading as the record readers (bytes decoded per line, a leading BOM dropped, blank lines passed over);
    the first bad line raises RecordError(path, line, reason) with reason non_utf8, invalid_json or not_object,
    an unopenable file missing_file. An empty file yields nothing. The caller checks the fields it needs.
    """
    with _open(path) as f:
        yield from iter_lines(iter_raw_lines(f), path, 1, schema="object")


def empty_file_error(path: str | os.PathLike) -> RecordError:
    return RecordError(path, None, "empty_file", "empty_file: the file holds no record")


def iter_located(
    paths: str | os.PathLike | Iterable[str | os.PathLike],
    schema: str = "pretrain",
    on_error: str = "raise",
    stats: RecordStats | None = None,
    default_category: str | None = None,
) -> Iterator[tuple[Path, int, dict]]:
    """Yield (file, line number, record) for every valid record of the files, in file then line order.

    paths: a file, a directory (its *.jsonl files), a glob, or a list of those.
    on_error: "raise" (RecordError at the first bad line) or "skip" (count it in `stats` under its reason).
    default_category: pretrain only; fills a missing "category" field (user corpora configured per category).
    """
    if schema not in CHECKS:
        raise ValueError(f"schema must be one of {tuple(CHECKS)}, got {schema!r}")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    stats = stats if stats is not None else RecordStats()
    for path in expand_paths(paths):
        stats.files += 1
        seen = stats.records + stats.num_skipped
        with _open(path) as f:
            for lineno, obj in iter_lines(iter_raw_lines(f), path, 1, schema, on_error, stats, default_category):
                yield path, lineno, obj
        if stats.records + stats.num_skipped == seen:
            err = empty_file_error(path)
            if on_error == "raise":
                raise err
            stats.add_error(err)


def iter_records(paths, schema: str = "pretrain", on_error: str = "raise", stats: RecordStats | None = None,
                 default_category: str | None = None) -> Iterator[dict]:
    """Like iter_located, yielding only the records."""
    for _, _, obj in iter_located(paths, schema, on_error, stats, default_category):
        yield obj


def read_records(paths, schema: str = "pretrain", on_error: str = "raise",
                 default_category: str | None = None) -> tuple[list[dict], RecordStats]:
    stats = RecordStats()
    records = list(iter_records(paths, schema, on_error, stats, default_category))
    return records, stats


def dumps_record(record: dict) -> bytes:
    """One jsonl line (UTF-8, no ASCII escaping, compact, fixed key order for pretraining records)."""
    if "target" in record and "source" in record:
        ordered = {k: record[k] for k in ("source", "target", "category") if k in record}
        ordered.update((k, v) for k, v in record.items() if k not in ordered)
        record = ordered
    return orjson.dumps(record) + b"\n"


def write_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> int:
    """Write records as jsonl (atomic: a temporary file renamed at the end). Returns the number written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    with open(tmp, "wb") as f:
        for rec in records:
            f.write(dumps_record(rec))
            n += 1
    os.replace(tmp, path)
    return n
