"""Arrow I/O for dataset preparation: the tokenized cache (one arrow file per category, memory-mapped) and the
bucket shards training reads (`datasets` save_to_disk directories) plus the stage manifest.

Bucket columns (the contract with cpt.train): input_ids, labels, doc_lengths, each list<int32>; sequences are not
padded; labels -100 = no loss; sum(doc_lengths) == len(input_ids).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pyarrow as pa

from cpt.artifacts.dataset import BUCKET_COLUMNS, read_manifest
from cpt.core.errors import DatasetError


def bucket_features():
    from datasets import Features, Sequence, Value

    return Features({c: Sequence(Value("int32")) for c in BUCKET_COLUMNS})


def _list_array(flat: np.ndarray, offsets: np.ndarray) -> pa.Array:
    return pa.LargeListArray.from_arrays(pa.array(offsets, type=pa.int64()), pa.array(flat, type=pa.int32())) \
        if offsets[-1] >= 2**31 else pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)),
                                                               pa.array(flat, type=pa.int32()))


# ------------------------------------------------------------------------------------------- tokenized cache
TOKENIZED_SCHEMA = {
    "pretrain": pa.schema([("input_ids", pa.list_(pa.int32())), ("n_masked", pa.int32()), ("line", pa.int64()),
                           ("file", pa.int32())]),
    "sft": pa.schema([("input_ids", pa.list_(pa.int32())), ("labels", pa.list_(pa.int32())),
                      ("line", pa.int64()), ("file", pa.int32())]),
}


class TokenizedWriter:
    """Append-only arrow IPC file of tokenized documents of one category."""

    def __init__(self, path: str | os.PathLike, kind: str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.kind = kind
        self.schema = TOKENIZED_SCHEMA[kind]
        self._sink = pa.OSFile(str(self.path), "wb")
        self._writer = pa.ipc.new_file(self._sink, self.schema)
        self.rows = 0
        self.tokens = 0

    def write(self, ids: np.ndarray, offsets: np.ndarray, lines: np.ndarray, file_index: int,
              n_masked: np.ndarray | None = None, labels: np.ndarray | None = None):
        n = len(offsets) - 1
        if n == 0:
            return
        cols = {"input_ids": _list_array(ids, offsets)}
        if self.kind == "pretrain":
            cols["n_masked"] = pa.array(n_masked, type=pa.int32())
        else:
            cols["labels"] = _list_array(labels, offsets)
        cols["line"] = pa.array(lines, type=pa.int64())
        cols["file"] = pa.array(np.full(n, file_index, dtype=np.int32))
        self._writer.write_batch(pa.record_batch([cols[f.name] for f in self.schema], schema=self.schema))
        self.rows += n
        self.tokens += int(offsets[-1] - offsets[0])

    def close(self):
        self._writer.close()
        self._sink.close()


def open_tokenized(path: str | os.PathLike) -> pa.Table:
    """The whole tokenized file as a zero-copy, memory-mapped table."""
    with pa.memory_map(str(path), "r") as source:
        return pa.ipc.open_file(source).read_all()


class TokenizedDocs:
    """Zero-copy random access to the documents of a memory-mapped tokenized table.

    pyarrow's take() on a many-chunk column concatenates the chunks first (a copy of the whole category in memory);
    here each row maps to (chunk, offset) and its ids are a numpy view into the mapped file.
    """

    def __init__(self, table: pa.Table):
        self.table = table
        col = table.column("input_ids")
        self._ids = [(c.offsets.to_numpy(), c.values.to_numpy(zero_copy_only=False)) for c in col.chunks]
        self._labels = None
        self._n_masked = None
        if "labels" in table.column_names:
            self._labels = [c.values.to_numpy(zero_copy_only=False) for c in table.column("labels").chunks]
        else:
            self._n_masked = [c.to_numpy(zero_copy_only=False) for c in table.column("n_masked").chunks]
        sizes = np.array([len(off) - 1 for off, _ in self._ids], dtype=np.int64)
        self._starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

    def __len__(self) -> int:
        return int(self._starts[-1])

    def lengths(self) -> np.ndarray:
        if not self._ids:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate([np.diff(off) for off, _ in self._ids]).astype(np.int64)

    def take(self, rows) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        from cpt.artifacts.dataset import IGNORE_INDEX

        rows = np.asarray(rows, dtype=np.int64)
        chunks = np.searchsorted(self._starts, rows, side="right") - 1
        for r, c in zip(rows.tolist(), chunks.tolist()):
            local = r - int(self._starts[c])
            off, values = self._ids[c]
            s, e = int(off[local]), int(off[local + 1])
            ids = values[s:e]
            if self._labels is not None:
                yield ids, self._labels[c][s:e]
            else:
                labels = ids.copy()
                labels[: int(self._n_masked[c][local])] = IGNORE_INDEX
                yield ids, labels


def doc_lengths_of(table: pa.Table) -> np.ndarray:
    return TokenizedDocs(table).lengths()


def take_docs(table, rows: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(ids, labels) of the given rows, in that order. Labels come from n_masked (pretrain) or stored (sft)."""
    docs = table if isinstance(table, TokenizedDocs) else TokenizedDocs(table)
    return docs.take(rows)


# ------------------------------------------------------------------------------------------- bucket shards
def write_bucket(sequences: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]], out_dir: str | os.PathLike,
                 max_length: int, shuffle_seed: int | None, fingerprint: str, batch_rows: int = 1024,
                 max_shard_size: str | int = "500MB", shuffle_key: tuple = ()) -> dict:
    """Write one bucket: sequences -> temporary arrow -> seeded permutation -> save_to_disk(out_dir).

    The permutation depends on shuffle_seed and shuffle_key only (e.g. (stage, bucket index)); `fingerprint`
    (a hash of inputs + settings) goes into the dataset's state.json.

    An empty bucket writes nothing (num_sequences 0). Memory: one batch of sequences; the shuffle is a permutation of row numbers over a memory-mapped file.
    Returns counts: num_sequences, num_tokens, num_target_tokens, num_pieces, padding_tokens.
    """
    from datasets import Dataset
    from datasets.arrow_writer import ArrowWriter

    from cpt.artifacts.dataset import IGNORE_INDEX
    from cpt.dataset.buckets import rng_for

    out = Path(out_dir)
    if out.exists():
        shutil.rmtree(out)
    tmp_dir = out.parent / f".{out.name}.tmp"
    if tmp_dir.exists():
        shutil.rmtree(tmp_dir)
    tmp_dir.mkdir(parents=True)
    tmp = tmp_dir / "sequences.arrow"
    feats = bucket_features()
    schema = feats.arrow_schema
    stats = {"num_sequences": 0, "num_tokens": 0, "num_target_tokens": 0, "num_pieces": 0, "padding_tokens": 0}
    writer = ArrowWriter(features=feats, path=str(tmp))
    batch: list = []

    def flush():
        if not batch:
            return
        cols = []
        for k in range(3):
            parts = [b[k] for b in batch]
            lens = np.fromiter((len(p) for p in parts), dtype=np.int64, count=len(parts))
            offsets = np.zeros(len(parts) + 1, dtype=np.int64)
            np.cumsum(lens, out=offsets[1:])
            cols.append(_list_array(np.concatenate(parts).astype(np.int32, copy=False), offsets))
        writer.write_table(pa.Table.from_arrays(cols, schema=schema))
        batch.clear()

    # batches of about 1 M tokens, whatever max_length is: memory stays flat in corpus and bucket size
    save_rows = max(1, (1 << 20) // max_length)
    batch_rows = max(1, min(batch_rows, save_rows))
    for ids, labels, doc_lengths in sequences:
        n = len(ids)
        if n == 0 or n > max_length or len(labels) != n or int(doc_lengths.sum()) != n:
            raise DatasetError(f"{out}: internal error: bad sequence (len {n}, labels {len(labels)}, "
                               f"doc_lengths sum {int(doc_lengths.sum())}, max_length {max_length})")
        stats["num_sequences"] += 1
        stats["num_tokens"] += n
        stats["num_target_tokens"] += int((labels != IGNORE_INDEX).sum())
        stats["num_pieces"] += len(doc_lengths)
        stats["padding_tokens"] += max_length - n
        batch.append((ids, labels, doc_lengths))
        if len(batch) >= batch_rows:
            flush()
    flush()
    writer.finalize()
    writer.close()
    if stats["num_sequences"] == 0:
        # nothing to train on (an empty bin): no directory; the manifest leaves it out of the bucket order
        shutil.rmtree(tmp_dir)
        return stats
    ds = Dataset.from_file(str(tmp))
    n = len(ds)
    if shuffle_seed is not None and n > 1:
        perm = rng_for(shuffle_seed, "shuffle", *shuffle_key).permutation(n)
        ds = ds.select(perm, new_fingerprint=fingerprint)
    else:
        ds._fingerprint = fingerprint
    import datasets.config as ds_config
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was_disabled = are_progress_bars_disabled()
    disable_progress_bars()  # the caller shows one bar per stage; save_to_disk would add one per bucket
    saved_batch = ds_config.DEFAULT_MAX_BATCH_SIZE
    # save_to_disk copies DEFAULT_MAX_BATCH_SIZE (1000) rows at a time: 50 MB at 4096 tokens; keep ~1 M tokens
    ds_config.DEFAULT_MAX_BATCH_SIZE = save_rows
    try:
        ds.save_to_disk(str(out), max_shard_size=max_shard_size)
    finally:
        ds_config.DEFAULT_MAX_BATCH_SIZE = saved_batch
        if not was_disabled:
            enable_progress_bars()
    del ds
    shutil.rmtree(tmp_dir)
    return stats


def fingerprint_of(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def load_buckets(stage_dir: str | os.PathLike):
    """The stage's buckets as `datasets.Dataset`s, in training order."""
    from datasets import load_from_disk

    manifest = read_manifest(stage_dir)
    return [load_from_disk(str(Path(stage_dir) / name)) for name in manifest["buckets"]]
