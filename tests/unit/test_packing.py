"""cpt.dataset.packing: records validated by cpt.artifacts.records, exact masks, overlong handling with counted skips, lossless
best-fit packing."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _dataset_support import build_tokenizer

from cpt.artifacts.dataset import IGNORE_INDEX
from cpt.artifacts.records import REASONS, iter_records
from cpt.core.errors import ConfigError, RecordError
from cpt.dataset.packing import (
    BestFitPacker,
    PieceStats,
    backend_tokenizer,
    iter_packed,
    pack_lengths,
    pretrain_labels,
    split_document,
    tokenize_pretrain_lines,
)


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(build_tokenizer(tmp_path_factory.mktemp("tok"))))


def _lines(recs):
    return [json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in recs]


def test_tokens_and_mask_are_exact(tok):
    recs = [
        {"source": "Question: what is it?", "target": " It is the capital.", "category": "en"},
        {"source": "", "target": "中共中央总书记发表新年讲话", "category": "zh"},
        {"source": "标题：", "target": "I am a cat </s> <s> with special text", "category": "zh"},
    ]
    b = tokenize_pretrain_lines(backend_tokenizer(tok), tok.bos_token_id, tok.eos_token_id, _lines(recs), "x.jsonl", 1,
                                "raise")
    assert b.categories == ["en", "zh", "zh"]
    assert list(b.lines) == [1, 2, 3]
    for i, r in enumerate(recs):
        ids = b.ids[b.offsets[i]:b.offsets[i + 1]]
        src = tok(r["source"], add_special_tokens=False, split_special_tokens=True)["input_ids"] if r["source"] else []
        tgt = tok(r["target"], add_special_tokens=False, split_special_tokens=True)["input_ids"]
        assert ids.tolist() == [tok.bos_token_id, *src, *tgt, tok.eos_token_id]
        assert b.n_masked[i] == 1 + len(src)
        labels = pretrain_labels(ids, b.n_masked[i])
        assert labels.tolist() == [IGNORE_INDEX] * (1 + len(src)) + [*tgt, tok.eos_token_id]
    # special-token text inside a document stays text: exactly one bos and one eos per document
    last = b.ids[b.offsets[2]:b.offsets[3]].tolist()
    assert last.count(tok.eos_token_id) == 1 and last.count(tok.bos_token_id) == 1


@pytest.mark.parametrize("line, reason", [
    (b"{not json\n", "invalid_json"),
    ('{"source": "", "target": "caf\u00e9", "category": "c"}\n'.encode("latin-1"), "non_utf8"),
    (b"[1, 2]\n", "not_object"),
    (b'{"target": "x", "category": "c"}\n', "missing_field"),
    (b'{"source": "", "category": "c"}\n', "missing_field"),
    (b'{"source": "", "target": "x"}\n', "missing_field"),
    (b'{"source": 3, "target": "x", "category": "c"}\n', "ill_typed"),
    (b'{"source": "", "target": ["x"], "category": "c"}\n', "ill_typed"),
    (b'{"source": "", "target": "x", "category": null}\n', "ill_typed"),
    (b'{"source": "q", "target": " \\t ", "category": "c"}\n', "empty_target"),
    (b'{"source": "", "target": "", "category": "c"}\n', "empty_target"),
])
def test_bad_records_error_or_counted_skip(tok, tmp_path, line, reason):
    """Every bad-record class: the same RecordError (reason, file:line, text) as cpt.artifacts.records gives, or a skip
    counted under that reason with dataset.on_bad_record: skip."""
    good = _lines([{"source": "", "target": "fine", "category": "c"}])
    backend = backend_tokenizer(tok)
    with pytest.raises(RecordError) as e:
        tokenize_pretrain_lines(backend, 1, 2, good + [line], "data/c.jsonl", 10, "raise")
    assert e.value.reason == reason and e.value.line == 11 and "data/c.jsonl:11" in str(e.value)
    assert any("dataset.on_bad_record: skip" in n for n in e.value.__notes__)
    # the very same text as the project's validator
    f = tmp_path / "c.jsonl"
    f.write_bytes(b"\n" * 10 + line)
    with pytest.raises(RecordError) as v:
        list(iter_records(f))
    assert str(v.value).replace(str(f), "data/c.jsonl") == str(e.value) and v.value.reason == reason
    b = tokenize_pretrain_lines(backend, 1, 2, good + [line, b"\n"], "data/c.jsonl", 10, "skip")
    assert len(b) == 1 and b.lines.tolist() == [10]
    r = b.records
    assert dict(r.skipped) == {reason: 1} and r.blank_lines == 1 and r.records == 1 and r.lines == 3
    assert reason in REASONS and r.examples == [str(e.value)]


def test_bad_record_mode_is_checked():
    from cpt.core.schema import complete

    with pytest.raises(ConfigError, match="dataset.on_bad_record: 'ignore' is not one of"):
        complete("dataset", {"on_bad_record": "ignore"})


def test_empty_source_is_fine_bom_and_blank_lines_are_not_records(tok):
    lines = [b"\xef\xbb\xbf" + _lines([{"source": "", "target": "a", "category": "c"}])[0], b"  \n",
             *_lines([{"source": "", "target": "b", "category": "c", "extra": 1}])]
    b = tokenize_pretrain_lines(backend_tokenizer(tok), 1, 2, lines, "c.jsonl", 1, "raise")
    assert len(b) == 2 and b.lines.tolist() == [1, 3]
    assert b.records.blank_lines == 1 and b.records.num_skipped == 0


def _doc(n, n_masked):
    ids = np.arange(100, 100 + n, dtype=np.int32)
    return ids, pretrain_labels(ids, n_masked)


def test_split_keeps_every_target_token_and_skips_all_masked_pieces():
    stats = PieceStats()
    ids, labels = _doc(25, 12)   # pieces of 5: [0,5) and [5,10) are all masked -> skipped; [10,15) mixed
    pieces = split_document(ids, labels, 5, "split", stats)
    assert [len(p[0]) for p in pieces] == [5, 5, 5]
    assert np.concatenate([p[0] for p in pieces]).tolist() == ids[10:].tolist()
    assert stats.skipped_pieces == {"all_labels_masked": 2} and stats.skipped_tokens == {"all_labels_masked": 10}
    assert stats.target_tokens_out == stats.target_tokens_in == 13
    assert stats.tokens_out + 10 == stats.tokens_in == 25
    for p_ids, p_labels in pieces:
        assert (p_labels != IGNORE_INDEX).any()


def test_truncate_and_drop_count_what_they_lose():
    s1, s2 = PieceStats(), PieceStats()
    ids, labels = _doc(23, 3)
    assert [len(p[0]) for p in split_document(ids, labels, 10, "truncate", s1)] == [10]
    assert s1.skipped_tokens == {"overlong_truncated_tail": 13} and s1.skipped_target_tokens == {"overlong_truncated_tail": 13}
    assert split_document(ids, labels, 10, "drop", s2) == []
    assert s2.skipped_documents == {"overlong_dropped": 1} and s2.skipped_target_tokens == {"overlong_dropped": 20}
    s3 = PieceStats()
    ids, labels = _doc(10, 10)   # all masked, fits: nothing to learn -> skipped (a NaN loss otherwise)
    assert split_document(ids, labels, 10, "split", s3) == []
    assert s3.skipped_documents == {"all_labels_masked": 1}
    with pytest.raises(ConfigError, match="dataset.overlong"):
        split_document(ids, labels, 10, "squeeze", PieceStats())


@pytest.mark.parametrize("window, carry, slack", [(7, 0, 1.3), (50, 4, 1.08), (10_000, 64, 1.05)])
def test_best_fit_places_every_item_once_within_capacity(window, carry, slack):
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 120, size=1000)
    bins = pack_lengths(lengths, 128, window=window, carry=carry)
    flat = sorted(i for b in bins for i in b)
    assert flat == list(range(1000))
    assert all(sum(lengths[i] for i in b) <= 128 for b in bins)
    lower = int(np.ceil(lengths.sum() / 128))
    assert len(bins) <= lower * slack, (len(bins), lower)   # lower = the bins if nothing were ever padded
    assert bins == pack_lengths(lengths, 128, window=window, carry=carry)   # deterministic


def test_best_fit_beats_greedy_sequential():
    rng = np.random.default_rng(1)
    lengths = rng.integers(1, 400, size=2000)
    greedy, cur = 0, 0
    for n in lengths:
        if cur + n > 512:
            greedy, cur = greedy + 1, 0
        cur += n
    greedy += 1
    assert len(pack_lengths(lengths, 512, window=256, carry=16)) < greedy


def test_packed_sequences_are_lossless_and_carry_doc_lengths():
    rng = np.random.default_rng(2)
    docs = [_doc(int(n), int(rng.integers(0, n))) for n in rng.integers(1, 64, size=300)]
    seqs = list(iter_packed(iter(docs), 64, window=32, carry=4))
    assert sum(len(s[0]) for s in seqs) == sum(len(d[0]) for d in docs)
    got = sorted(tuple(ids[o - n:o].tolist()) for ids, _, dl in seqs for o, n in zip(np.cumsum(dl), dl))
    assert got == sorted(tuple(d[0].tolist()) for d in docs)
    for ids, labels, dl in seqs:
        assert len(ids) <= 64 and len(labels) == len(ids) and dl.sum() == len(ids)
        assert ids.dtype == labels.dtype == dl.dtype == np.int32


def test_packer_rejects_items_that_do_not_fit():
    with pytest.raises(ValueError):
        BestFitPacker(10, 16, 0).add("x", 11)


def test_tokenizer_json_is_read_without_transformers_and_agrees(tok, tmp_path):
    from _dataset_support import sample_text

    from cpt.dataset.packing import load_tokenizer

    tok.save_pretrained(str(tmp_path))
    fast = load_tokenizer(tmp_path)
    assert (fast.bos_token_id, fast.eos_token_id, fast.unk_token_id) == (tok.bos_token_id, tok.eos_token_id,
                                                                        tok.unk_token_id)
    assert len(fast) == len(tok)
    zh, en = sample_text()
    texts = zh[:20] + en[:50] + ["  two  spaces", "tab\there", "</s> text", "ＡＢＣ１２３"]
    got = [e.ids for e in fast.backend.encode_batch(texts, add_special_tokens=False)]
    assert got == tok(texts, add_special_tokens=False, split_special_tokens=True)["input_ids"]
    (tmp_path / "tokenizer.json").write_text("{}")
    from cpt.core.errors import TokenizerError

    with pytest.raises(TokenizerError, match="tokenizer.json"):
        load_tokenizer(tmp_path)
