"""Attacks on jsonl inputs (issue 24, item 9): each is a RecordError naming file:line (or the files) and a reason
code, or a count in the stats; nothing is accepted silently and no line is held whole in memory."""

from __future__ import annotations

import os
import tracemalloc

import pytest

from cpt.artifacts import inputs
from cpt.artifacts.corpus import category_files
from cpt.artifacts.records import expand_paths, iter_json_objects, read_records
from cpt.core.errors import RecordError

GOOD = b'{"source": "", "target": "text", "category": "news"}\n'


def test_duplicate_key_in_a_record_names_file_line_and_key(tmp_path):
    f = tmp_path / "a.jsonl"
    f.write_bytes(GOOD + b'{"source": "", "target": "kept?", "category": "news", "target": "won"}\n')
    with pytest.raises(RecordError, match=r"a\.jsonl:2: duplicate_key: key 'target' is given twice"):
        read_records(f)
    records, stats = read_records(f, on_error="skip")
    assert len(records) == 1 and stats.skipped == {"duplicate_key": 1}
    nested = tmp_path / "m.jsonl"
    nested.write_bytes(b'{"a": [{"x": 1, "x": 2}]}\n')
    with pytest.raises(RecordError, match=r"m\.jsonl:1: duplicate_key: key 'x'"):
        list(iter_json_objects(nested))
    # `":` inside text is no duplicate (it only triggers the slow check)
    ok = tmp_path / "ok.jsonl"
    ok.write_bytes(b'{"source": "", "target": "he said \\"a\\": b", "category": "news"}\n')
    assert read_records(ok)[0][0]["target"] == 'he said "a": b'


@pytest.mark.parametrize("label", ["", "../../..", "<script>", ".hidden", "a/b", "x" * 101, "tab\there"])
def test_empty_or_path_like_category_labels_are_refused(tmp_path, label):
    f = tmp_path / "c.jsonl"
    f.write_text('{"source": "", "target": "t", "category": %s}\n' % __import__("json").dumps(label))
    with pytest.raises(RecordError, match=r"c\.jsonl:1: bad_category: category .* is not a name"):
        read_records(f)
    g = tmp_path / "s.jsonl"
    g.write_text('{"messages": [{"from": "human", "content": "q"}, {"from": "assistant", "content": "a"}], '
                 '"category": %s}\n' % __import__("json").dumps(label))
    with pytest.raises(RecordError, match=r"s\.jsonl:1: bad_category"):
        read_records(g, schema="sft")


def test_names_in_any_script_are_categories(tmp_path):
    f = tmp_path / "c.jsonl"
    f.write_text('{"source": "", "target": "t", "category": "新闻_2024.v1+zh"}\n', encoding="utf-8")
    assert read_records(f)[0][0]["category"] == "新闻_2024.v1+zh"


def test_a_fifo_named_jsonl_is_counted_and_named_not_skipped(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    (d / "a.jsonl").write_bytes(GOOD)
    os.mkfifo(d / "b.jsonl")
    (d / "c.jsonl").symlink_to(d / "gone.jsonl")
    with pytest.raises(RecordError, match=r"in: not_regular: 2 input\(s\) named like data files are not regular "
                                          r"files: .*b\.jsonl \(FIFO\), .*c\.jsonl \(broken link\)"):
        expand_paths([d])
    with pytest.raises(RecordError, match=r"not_regular: 1 input"):
        expand_paths([d / "b.jsonl"])  # named directly: refused, never opened (it would block)
    with pytest.raises(RecordError, match=r"not_regular: 2 input"):
        category_files(d)


def test_a_very_long_line_is_refused_in_bounded_memory(tmp_path, monkeypatch):
    monkeypatch.setattr(inputs, "MAX_LINE_BYTES", 1 << 20)
    f = tmp_path / "long.jsonl"
    with open(f, "wb") as out:
        out.write(GOOD)
        out.write(b'{"source": "", "category": "news", "target": "' + b"x" * (30 << 20) + b'"}\n')
        out.write(GOOD)
    with pytest.raises(RecordError, match=rf"long\.jsonl:2: line_too_long: the line is longer than {1 << 20} bytes"):
        read_records(f)
    tracemalloc.start()
    records, stats = read_records(f, on_error="skip")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(records) == 2 and stats.skipped == {"line_too_long": 1} and stats.lines == 3
    assert peak < 8 << 20  # the 30 MB line was never held whole (the limit is 1 MB)
