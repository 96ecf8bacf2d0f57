"""cpt.artifacts.records: every failure class raises RecordError naming file:line, and is counted under its reason in skip mode."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cpt.artifacts.records import REASONS, RecordStats, iter_json_objects, iter_located, read_records, write_jsonl
from cpt.core.errors import RecordError
from cpt.corpus.cli import cli_validate

GOOD = {"source": "", "target": "正文", "category": "zh_news"}
GOOD_SFT = {"messages": [{"from": "human", "content": "问"}, {"from": "assistant", "content": "答"}]}


def line(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


# (schema, bad line bytes, reason)
BAD_PRETRAIN = [
    (b'{"source": "", "target": "x", "category": "c"', "invalid_json"),
    (b'["a", "b"]', "not_object"),
    (b'"just a string"', "not_object"),
    (line({"source": "", "category": "c"}), "missing_field"),
    (line({"target": "x", "category": "c"}), "missing_field"),
    (line({"source": "", "target": "x"}), "missing_field"),
    (line({"source": 3, "target": "x", "category": "c"}), "ill_typed"),
    (line({"source": "", "target": ["x"], "category": "c"}), "ill_typed"),
    (line({"source": "", "target": "x", "category": None}), "ill_typed"),
    (line({"source": "", "target": " \t\u3000 ", "category": "c"}), "empty_target"),
    (line({"source": "", "target": "", "category": "c"}), "empty_target"),
    ('{"source": "", "target": "caf\u00e9", "category": "c"}'.encode("latin-1"), "non_utf8"),
    ('{"source": "", "target": "中文", "category": "c"}'.encode("gbk"), "non_utf8"),
]

BAD_SFT = [
    (b"{not json}", "invalid_json"),
    (b"[1]", "not_object"),
    (line({"conversation": []}), "missing_field"),
    (line({"messages": {"from": "human"}}), "ill_typed"),
    (line({"messages": GOOD_SFT["messages"], "category": 5}), "ill_typed"),
    (line({"messages": []}), "empty_messages"),
    (line({"messages": ["hi"]}), "ill_typed"),
    (line({"messages": [{"from": "human"}]}), "missing_field"),
    (line({"messages": [{"content": "x"}]}), "missing_field"),
    (line({"messages": [{"from": "human", "content": 1}]}), "ill_typed"),
    (line({"messages": [{"from": "user", "content": "x"}, {"from": "assistant", "content": "y"}]}), "unknown_role"),
    (line({"messages": [{"from": "human", "content": "x"}, {"from": "assistant", "content": "  "}]}), "empty_content"),
    (line({"messages": [{"from": "assistant", "content": "x"}, {"from": "human", "content": "y"}]}), "first_not_human"),
    (line({"messages": [{"from": "human", "content": "x"}, {"from": "human", "content": "y"},
                        {"from": "assistant", "content": "z"}]}), "repeated_role"),
    (line({"messages": [{"from": "human", "content": "x"}, {"from": "assistant", "content": "y"},
                        {"from": "assistant", "content": "z"}]}), "repeated_role"),
    (line({"messages": [{"from": "human", "content": "x"}]}), "no_assistant"),
    (b'{"messages": [{"from": "human", "content": "\xff"}]}', "non_utf8"),
]

CASES = [("pretrain", b, r) for b, r in BAD_PRETRAIN] + [("sft", b, r) for b, r in BAD_SFT]


def write_lines(path, lines: list[bytes]):
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@pytest.mark.parametrize("schema,bad,reason", CASES, ids=[f"{s}-{r}-{i}" for i, (s, _, r) in enumerate(CASES)])
def test_bad_line_raises_naming_file_line(tmp_path, schema, bad, reason):
    good = line(GOOD if schema == "pretrain" else GOOD_SFT)
    path = write_lines(tmp_path / "data.jsonl", [good, good, bad, good])
    with pytest.raises(RecordError) as info:
        list(iter_located(path, schema=schema))
    err = info.value
    assert err.reason == reason
    assert err.line == 3
    assert f"{path}:3:" in str(err)
    assert reason in str(err)


@pytest.mark.parametrize("schema,bad,reason", CASES, ids=[f"{s}-{r}-{i}" for i, (s, _, r) in enumerate(CASES)])
def test_bad_line_is_counted_in_skip_mode(tmp_path, schema, bad, reason):
    good = line(GOOD if schema == "pretrain" else GOOD_SFT)
    path = write_lines(tmp_path / "data.jsonl", [good, bad, good, bad, good])
    stats = RecordStats()
    got = list(iter_located(path, schema=schema, on_error="skip", stats=stats))
    assert [ln for _, ln, _ in got] == [1, 3, 5]
    assert stats.records == 3
    assert dict(stats.skipped) == {reason: 2}
    assert stats.records + stats.num_skipped + stats.blank_lines == stats.lines == 5
    assert f"{path}:2:" in stats.examples[0] and f"{path}:4:" in stats.examples[1]
    assert reason in REASONS


def test_all_reasons_are_exercised():
    trust = {"duplicate_key", "bad_category", "line_too_long", "not_regular"}  # tests/unit/test_trust_records.py
    assert {r for _, _, r in CASES} | {"empty_file", "missing_file"} | trust == set(REASONS)


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"])
def test_empty_file(tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(content)
    with pytest.raises(RecordError) as info:
        list(iter_located(path))
    assert info.value.reason == "empty_file" and str(path) in str(info.value)
    stats = RecordStats()
    assert list(iter_located(path, on_error="skip", stats=stats)) == []
    assert stats.skipped == {"empty_file": 1}


def test_file_of_only_bad_lines_is_not_also_empty(tmp_path):
    path = write_lines(tmp_path / "bad.jsonl", [b"{", b"["])
    stats = RecordStats()
    assert list(iter_located(path, on_error="skip", stats=stats)) == []
    assert stats.skipped == {"invalid_json": 2}


def test_missing_file(tmp_path):
    with pytest.raises(RecordError) as info:
        list(iter_located(tmp_path / "nope.jsonl"))
    assert info.value.reason == "missing_file"


def test_blank_lines_bom_and_extra_fields(tmp_path):
    rec = {**GOOD, "id": 7}
    path = tmp_path / "a.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + line(rec) + b"\n\n" + line(GOOD) + b"\r\n")
    stats = RecordStats()
    got = list(iter_located(path, stats=stats))
    assert [r for _, _, r in got] == [rec, GOOD]
    assert [ln for _, ln, _ in got] == [1, 3]
    assert stats.blank_lines == 1 and stats.records == 2 and stats.num_skipped == 0


def test_default_category_fills_missing_only(tmp_path):
    path = write_lines(tmp_path / "a.jsonl", [line({"source": "", "target": "t"}), line(GOOD)])
    recs, _ = read_records(path, default_category="mine")
    assert [r["category"] for r in recs] == ["mine", "zh_news"]


def test_directory_and_glob_inputs(tmp_path):
    write_lines(tmp_path / "b.jsonl", [line(GOOD)])
    write_lines(tmp_path / "a.jsonl", [line(GOOD), line(GOOD)])
    (tmp_path / "notes.txt").write_text("not a record")
    got = [(p.name, ln) for p, ln, _ in iter_located(tmp_path)]
    assert got == [("a.jsonl", 1), ("a.jsonl", 2), ("b.jsonl", 1)]
    assert [(p.name, ln) for p, ln, _ in iter_located(str(tmp_path / "*.jsonl"))] == got
    with pytest.raises(RecordError):
        list(iter_located(tmp_path / "sub-missing" / "*.jsonl"))


def test_stats_merge_and_dict():
    a, b = RecordStats(files=1, lines=3, records=2), RecordStats(files=2, lines=5, records=4, blank_lines=1)
    b.skipped["invalid_json"] = 1
    d = a.merge(b).to_dict()
    assert d["files"] == 3 and d["records"] == 6 and d["skipped"] == {"invalid_json": 1} and d["skipped_total"] == 1


def test_write_jsonl_roundtrip_bytes(tmp_path):
    recs = [{"category": "c", "target": "中文 text\n第二行", "source": ""}, {"source": "s", "target": "t", "category": "d"}]
    n = write_jsonl(tmp_path / "out.jsonl", recs)
    raw = (tmp_path / "out.jsonl").read_bytes()
    assert n == 2
    assert raw.splitlines()[0] == '{"source":"","target":"中文 text\\n第二行","category":"c"}'.encode()
    back, _ = read_records(tmp_path / "out.jsonl")
    assert back == recs


def test_cli_validate(tmp_path):
    good = write_lines(tmp_path / "good.jsonl", [line(GOOD)] * 3)
    bad = write_lines(tmp_path / "bad.jsonl", [line(GOOD), b"{", line({"source": "", "target": "", "category": "c"})])
    runner = CliRunner()
    res = runner.invoke(cli_validate, [str(good)])
    assert res.exit_code == 0 and "records 3" in res.output
    res = runner.invoke(cli_validate, [str(good), str(bad)])
    assert res.exit_code == 2 and f"{bad}:2" in res.output  # 2: the exit code of every input error (README)
    res = runner.invoke(cli_validate, ["--skip", "--json", str(good), str(bad)])
    assert res.exit_code == 2
    d = json.loads(res.stdout)
    assert d["records"] == 4 and d["skipped"] == {"invalid_json": 1, "empty_target": 1}
    sft = write_lines(tmp_path / "sft.jsonl", [line(GOOD_SFT)])
    assert runner.invoke(cli_validate, ["--schema", "sft", str(sft)]).exit_code == 0
    assert runner.invoke(cli_validate, ["--schema", "sft", str(good)]).exit_code == 2


def test_record_error_survives_pickling():
    import pickle

    from cpt.core.errors import RecordError

    err = RecordError("data/x.jsonl", 7, "invalid_json", "invalid_json: Expecting value")
    back = pickle.loads(pickle.dumps(err))
    assert (str(back), back.path, back.line, back.reason) == (str(err), err.path, err.line, err.reason)


def test_iter_json_objects_any_schema(tmp_path):
    """Objects of any shape with their line numbers; blank lines and a BOM passed over; an empty file is fine."""
    p = tmp_path / "m.jsonl"
    p.write_bytes(b'\xef\xbb\xbf{"step": 1}\n\n{"piece": "\xe4\xb8\xad"}\n  \n{}\n')
    assert list(iter_json_objects(p)) == [(1, {"step": 1}), (3, {"piece": "中"}), (5, {})]
    (tmp_path / "e.jsonl").write_bytes(b"\n")
    assert list(iter_json_objects(tmp_path / "e.jsonl")) == []


@pytest.mark.parametrize("bad, reason", [(b"{oops", "invalid_json"), (b"[1, 2]", "not_object"),
                                         (b'{"a": "\xff"}', "non_utf8")])
def test_iter_json_objects_bad_line(tmp_path, bad, reason):
    p = tmp_path / "m.jsonl"
    p.write_bytes(b'{"a": 1}\n' + bad + b"\n")
    with pytest.raises(RecordError, match=rf"m\.jsonl:2: {reason}: ") as e:
        list(iter_json_objects(p))
    assert (e.value.line, e.value.reason) == (2, reason)
    with pytest.raises(RecordError) as e:
        list(iter_json_objects(tmp_path / "absent.jsonl"))
    assert e.value.reason == "missing_file"
