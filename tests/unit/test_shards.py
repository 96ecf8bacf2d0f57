"""cpt.dataset.shards: bucket shards training loads (columns, dtypes, order), byte-identical reruns, manifest checks."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from cpt.artifacts.dataset import bucket_name, read_manifest, write_manifest
from cpt.core.errors import DatasetError
from cpt.dataset.shards import (
    TokenizedWriter,
    doc_lengths_of,
    load_buckets,
    open_tokenized,
    take_docs,
    write_bucket,
)


def _sequences(n, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        dl = rng.integers(1, 20, size=int(rng.integers(1, 4))).astype(np.int32)
        ids = rng.integers(3, 1000, size=int(dl.sum())).astype(np.int32)
        labels = ids.copy()
        labels[0] = -100
        yield ids, labels, dl


def _digest(d):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir())}


def test_bucket_roundtrip_and_identical_bytes(tmp_path):
    seqs = list(_sequences(300))
    s1 = write_bucket(iter(seqs), tmp_path / "a" / bucket_name(0), 64, shuffle_seed=3, fingerprint="f0", batch_rows=32)
    write_bucket(iter(seqs), tmp_path / "b" / bucket_name(0), 64, shuffle_seed=3, fingerprint="f0", batch_rows=7)
    write_bucket(iter(seqs), tmp_path / "c" / bucket_name(0), 64, shuffle_seed=4, fingerprint="f0")
    a, b, c = (_digest(tmp_path / x / "bucket-00000") for x in "abc")
    assert a == b and any(n.endswith(".arrow") for n in a)
    assert a["data-00000-of-00001.arrow"] != c["data-00000-of-00001.arrow"]
    assert s1["num_sequences"] == 300 and s1["num_tokens"] == sum(len(s[0]) for s in seqs)
    assert s1["padding_tokens"] == 300 * 64 - s1["num_tokens"]
    write_manifest(tmp_path / "a", {"buckets": ["bucket-00000"], "num_sequences": 300, "num_tokens": 1,
                                    "max_length": 64, "tokenizer": "t"})
    (ds,) = load_buckets(tmp_path / "a")
    assert ds.column_names == ["input_ids", "labels", "doc_lengths"]
    assert str(ds.features["input_ids"].feature.dtype) == "int32"
    got = sorted(tuple(r["input_ids"]) for r in ds)
    assert got == sorted(tuple(s[0].tolist()) for s in seqs)      # same content, shuffled order
    assert [r["input_ids"] for r in ds.select(range(5))] != [s[0].tolist() for s in seqs[:5]]
    for r in ds:
        assert sum(r["doc_lengths"]) == len(r["input_ids"]) == len(r["labels"])
    assert ds.data.table.schema.field("labels").type.value_type == "int32"


def test_bad_sequence_is_an_internal_error(tmp_path):
    ids = np.arange(10, dtype=np.int32)
    with pytest.raises(DatasetError, match="internal error"):
        write_bucket(iter([(ids, ids, np.array([4], dtype=np.int32))]), tmp_path / "x", 64, None, "f")
    with pytest.raises(DatasetError, match="internal error"):
        write_bucket(iter([(ids, ids, np.array([10], dtype=np.int32))]), tmp_path / "y", 8, None, "f")


def test_manifest_errors_name_what_to_do(tmp_path):
    with pytest.raises(DatasetError, match="prepare-pretrain"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"buckets": []}))
    with pytest.raises(DatasetError, match="num_sequences"):
        read_manifest(tmp_path)


@pytest.mark.parametrize("kind", ["pretrain", "sft"])
def test_tokenized_cache_roundtrip(tmp_path, kind):
    w = TokenizedWriter(tmp_path / "c.arrow", kind)
    docs = [np.arange(5, dtype=np.int32) + 3, np.arange(2, dtype=np.int32) + 3, np.arange(7, dtype=np.int32) + 3]
    for chunk in (docs[:2], docs[2:]):
        flat = np.concatenate(chunk)
        offsets = np.concatenate([[0], np.cumsum([len(d) for d in chunk])])
        labels = np.where(flat % 2 == 0, flat, -100).astype(np.int32)
        w.write(flat, offsets, np.arange(len(chunk)), 0, n_masked=np.ones(len(chunk), dtype=np.int32), labels=labels)
    w.close()
    t = open_tokenized(tmp_path / "c.arrow")
    assert doc_lengths_of(t).tolist() == [5, 2, 7]
    got = list(take_docs(t, np.array([2, 0])))
    assert got[0][0].tolist() == docs[2].tolist() and got[1][0].tolist() == docs[0].tolist()
    if kind == "pretrain":
        assert got[1][1].tolist() == [-100, *docs[0][1:].tolist()]
    else:
        assert got[1][1].tolist() == [x if x % 2 == 0 else -100 for x in docs[0].tolist()]
