"""Tokenize pretraining records, split overlong documents, pack documents into sequences of <= max_length.

A document is bos + source + target + eos; its labels are -100 on bos and the source tokens (the model never
learns to predict the prompt), the target tokens and eos carry the loss. Source and target are tokenized
separately, so the mask boundary is exact (never a token that straddles source and target).

Nothing is lost by packing: every token of every kept piece lands in exactly one sequence. The only tokens that
do not reach the output are counted by reason (`PieceStats`): pieces whose labels are all -100 (nothing to learn,
they would give a 0/0 = NaN loss) and, with overlong="truncate", the cut tails. Records are validated by
cpt.artifacts.records (same reason codes and file:line errors as every other stage); `dataset.on_bad_record: raise | skip`
is its on_error raise | skip, and bad records are counted per cpt.artifacts.records reason (`TokenizedBatch.records`).

Packing is best-fit decreasing inside a bounded window of documents (memory stays flat), with a few open, least
full bins carried from one window into the next, so the padding a batch of max_length needs stays small.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

import numpy as np

from cpt.artifacts.dataset import IGNORE_INDEX
from cpt.artifacts.records import RecordStats, iter_lines
from cpt.core.errors import ConfigError, RecordError, TokenizerError

OVERLONG_MODES = ("split", "truncate", "drop")


# --------------------------------------------------------------------------------------------- tokenization
def backend_tokenizer(tokenizer):
    """The `tokenizers.Tokenizer` behind an HF fast tokenizer (or a FastTokenizer), set to treat special-token
    text as plain text: a document that contains the characters "</s>" must not get an eos id in the middle.
    """
    if isinstance(tokenizer, FastTokenizer):
        return tokenizer.backend
    backend = getattr(tokenizer, "_tokenizer", None)
    if backend is None:
        raise TokenizerError(
            f"{getattr(tokenizer, 'name_or_path', tokenizer)}: not a fast tokenizer (no tokenizer.json backend); "
            f"save it with a tokenizer.json or install `tokenizers` so AutoTokenizer can convert it"
        )
    from tokenizers import Tokenizer

    # a copy: transformers resets the flag on its own backend at every call (split_special_tokens)
    backend = Tokenizer.from_str(backend.to_str())
    backend.encode_special_tokens = True
    return backend


def _token_text(value) -> str | None:
    if isinstance(value, dict):
        return value.get("content")
    return value


@dataclass
class FastTokenizer:
    """What data preparation needs of a tokenizer: the `tokenizers` backend and the special ids.

    `load_tokenizer(dir)` reads tokenizer.json directly when the directory has one (no transformers/torch import,
    which costs seconds per process); otherwise AutoTokenizer converts the SentencePiece model once.
    """

    name_or_path: str
    backend: object
    bos_token_id: int
    eos_token_id: int
    unk_token_id: int | None
    unk_token: str | None

    def __len__(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def convert_tokens_to_ids(self, text: str) -> int | None:
        return self.backend.token_to_id(text)


def load_tokenizer(tokenizer_dir) -> FastTokenizer:
    from cpt.artifacts.identity import require_tokenizer

    d = require_tokenizer(tokenizer_dir)  # one short error for an empty / wrong directory
    if (d / "tokenizer.json").is_file():
        from tokenizers import Tokenizer

        try:
            backend = Tokenizer.from_file(str(d / "tokenizer.json"))
        except Exception as exc:  # noqa: BLE001 - any parse failure is the same user-facing problem
            raise TokenizerError(f"{d / 'tokenizer.json'}: cannot be read ({exc})") from exc
        names = {}
        for fname in ("special_tokens_map.json", "tokenizer_config.json"):
            p = d / fname
            if p.is_file():
                cfg = json.loads(p.read_text(encoding="utf-8"))
                for key in ("bos_token", "eos_token", "unk_token"):
                    if key not in names and _token_text(cfg.get(key)):
                        names[key] = _token_text(cfg.get(key))
        names = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", **names}
        ids = {k: backend.token_to_id(v) for k, v in names.items()}
        if ids["bos_token"] is None or ids["eos_token"] is None:
            raise TokenizerError(f"{d}: bos {names['bos_token']!r} / eos {names['eos_token']!r} are not tokens of "
                                 f"tokenizer.json; fix special_tokens_map.json / tokenizer_config.json")
        backend.encode_special_tokens = True
        return FastTokenizer(str(d), backend, ids["bos_token"], ids["eos_token"], ids["unk_token"], names["unk_token"])
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(d))
    except Exception as exc:  # noqa: BLE001
        raise TokenizerError(f"{d}: cannot open the tokenizer ({exc}); expected a Hugging Face tokenizer directory "
                             f"(tokenizer.model or tokenizer.json + tokenizer_config.json)") from exc
    if tok.bos_token_id is None or tok.eos_token_id is None:
        raise TokenizerError(f"{d}: the tokenizer has no bos/eos token")
    return FastTokenizer(str(d), backend_tokenizer(tok), tok.bos_token_id, tok.eos_token_id, tok.unk_token_id,
                         tok.unk_token)


def encode_texts(backend, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text, no special tokens added. Empty strings give [] without calling the tokenizer."""
    out: list[list[int]] = [[] for _ in texts]
    idx = [i for i, t in enumerate(texts) if t]
    if idx:
        encs = backend.encode_batch([texts[i] for i in idx], add_special_tokens=False)
        for i, e in zip(idx, encs):
            out[i] = e.ids
    return out


@dataclass
class TokenizedBatch:
    """Documents of one batch as flat arrays: ids[offsets[i]:offsets[i+1]] is document i."""

    categories: list[str]
    ids: np.ndarray          # int32, all documents concatenated
    offsets: np.ndarray      # int64, len = n + 1
    n_masked: np.ndarray     # int32, leading tokens with label -100 (bos + source)
    lines: np.ndarray        # int64, 1-based line number of each document in its file
    records: RecordStats = field(default_factory=RecordStats)   # cpt.artifacts.records counts: lines, blank, skipped/reason

    def __len__(self) -> int:
        return len(self.categories)


def _flatten(seqs: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    lens = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    flat = np.fromiter((t for s in seqs for t in s), dtype=np.int32, count=int(offsets[-1]))
    return flat, offsets


def add_bad_records_hint(err: RecordError) -> RecordError:
    """The validator's message stays as it is (same text in every stage); the traceback gets the config key."""
    err.add_note("fix the record, or set dataset.on_bad_record: skip to count and skip such lines "
                 "(the manifest lists them per reason)")
    return err


def tokenize_pretrain_lines(backend, bos_id: int, eos_id: int, lines: Sequence[bytes], path: str,
                            first_line: int, on_error: str) -> TokenizedBatch:
    """Validate (cpt.artifacts.records) and tokenize a block of jsonl lines (line numbers first_line, first_line + 1, ...);
    `on_error`: cpt.artifacts.records' raise | skip (dataset.on_bad_record)."""
    stats = RecordStats()
    cats, sources, targets, line_nos = [], [], [], []
    try:
        for line_no, rec in iter_lines(lines, path, first_line, "pretrain", on_error, stats):
            cats.append(rec["category"])
            sources.append(rec["source"])
            targets.append(rec["target"])
            line_nos.append(line_no)
    except RecordError as err:
        raise add_bad_records_hint(err)
    src_ids = encode_texts(backend, sources)
    tgt_ids = encode_texts(backend, targets)
    docs = [[bos_id, *s, *t, eos_id] for s, t in zip(src_ids, tgt_ids)]
    flat, offsets = _flatten(docs)
    n_masked = np.fromiter((1 + len(s) for s in src_ids), dtype=np.int32, count=len(src_ids))
    return TokenizedBatch(cats, flat, offsets, n_masked, np.asarray(line_nos, dtype=np.int64), stats)


def pretrain_labels(ids: np.ndarray, n_masked: int) -> np.ndarray:
    labels = np.array(ids, dtype=np.int32, copy=True)
    labels[:n_masked] = IGNORE_INDEX
    return labels


# --------------------------------------------------------------------------------------------- overlong
@dataclass
class PieceStats:
    """What splitting did to documents; every dropped token is counted here."""

    documents: int = 0
    pieces: int = 0
    split_documents: int = 0
    tokens_in: int = 0
    target_tokens_in: int = 0          # tokens whose label is not -100
    tokens_out: int = 0
    target_tokens_out: int = 0
    skipped_pieces: dict = field(default_factory=dict)    # reason -> pieces
    skipped_tokens: dict = field(default_factory=dict)    # reason -> tokens
    skipped_target_tokens: dict = field(default_factory=dict)  # reason -> target tokens
    skipped_documents: dict = field(default_factory=dict)  # reason -> documents with nothing left

    def skip(self, reason: str, tokens: int, target_tokens: int, pieces: int = 1):
        self.skipped_pieces[reason] = self.skipped_pieces.get(reason, 0) + pieces
        self.skipped_tokens[reason] = self.skipped_tokens.get(reason, 0) + tokens
        self.skipped_target_tokens[reason] = self.skipped_target_tokens.get(reason, 0) + target_tokens

    def merge(self, other: "PieceStats") -> "PieceStats":
        for name in ("documents", "pieces", "split_documents", "tokens_in", "target_tokens_in", "tokens_out",
                     "target_tokens_out"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in ("skipped_pieces", "skipped_tokens", "skipped_target_tokens", "skipped_documents"):
            mine = getattr(self, name)
            for k, v in getattr(other, name).items():
                mine[k] = mine.get(k, 0) + v
        return self

    def as_dict(self) -> dict:
        return {k: (dict(sorted(v.items())) if isinstance(v, dict) else v) for k, v in self.__dict__.items()}


def split_document(ids: np.ndarray, labels: np.ndarray, max_length: int, overlong: str,
                   stats: PieceStats) -> list[tuple[np.ndarray, np.ndarray]]:
    """Pieces of one document, each at most max_length tokens, none with all labels -100."""
    if overlong not in OVERLONG_MODES:
        raise ConfigError(f"dataset.overlong: {overlong!r} is not one of {OVERLONG_MODES}")
    n = len(ids)
    target_mask = labels != IGNORE_INDEX
    n_target = int(target_mask.sum())
    stats.documents += 1
    stats.tokens_in += n
    stats.target_tokens_in += n_target
    if n <= max_length:
        spans = [(0, n)]
    elif overlong == "drop":
        stats.skip("overlong_dropped", n, n_target)
        stats.skipped_documents["overlong_dropped"] = stats.skipped_documents.get("overlong_dropped", 0) + 1
        return []
    elif overlong == "truncate":
        spans = [(0, max_length)]
        stats.skip("overlong_truncated_tail", n - max_length, int(target_mask[max_length:].sum()))
    else:
        spans = [(s, min(s + max_length, n)) for s in range(0, n, max_length)]
        stats.split_documents += 1
    out = []
    for s, e in spans:
        t = int(target_mask[s:e].sum())
        if t == 0:
            stats.skip("all_labels_masked", e - s, 0)
            continue
        out.append((ids[s:e], labels[s:e]))
        stats.pieces += 1
        stats.tokens_out += e - s
        stats.target_tokens_out += t
    if not out:
        stats.skipped_documents["all_labels_masked"] = stats.skipped_documents.get("all_labels_masked", 0) + 1
    return out


# --------------------------------------------------------------------------------------------- bin packing
class _Bin:
    __slots__ = ("serial", "items", "free")

    def __init__(self, serial: int, capacity: int):
        self.serial = serial
        self.items: list = []
        self.free = capacity


class BestFitPacker:
    """Best-fit decreasing over windows of items; memory is bounded by `window` items + `carry` open bins.

    add(item, length) buffers an item; when `window` items are buffered they are placed, largest first, each
    into the open bin whose free space is the smallest that still fits (a new bin if none fits). Then every open
    bin but the `carry` emptiest is emitted. finish() places the rest and emits every bin. Bins come out as lists
    of items in placement order; ties break on arrival order, so the result is deterministic.
    """

    def __init__(self, max_length: int, window: int, carry: int):
        """`window`, `carry`: dataset.pack_window, dataset.pack_carry."""
        self.max_length = max_length
        self.window = max(1, int(window))
        self.carry = max(0, int(carry))
        self._pending: list[tuple[int, int, object]] = []  # (length, arrival, item)
        self._arrival = 0
        self._serial = 0
        self._open: list[_Bin] = []

    def add(self, item, length: int) -> list[list]:
        if length > self.max_length or length < 1:
            raise ValueError(f"item of length {length} does not fit max_length {self.max_length}")
        self._pending.append((length, self._arrival, item))
        self._arrival += 1
        if len(self._pending) >= self.window:
            return self._place(final=False)
        return []

    def finish(self) -> list[list]:
        return self._place(final=True)

    def _place(self, final: bool) -> list[list]:
        pending = sorted(self._pending, key=lambda x: (-x[0], x[1]))
        self._pending = []
        bins = self._open
        # free space of the open bins, kept sorted as (free, serial) for bisecting the best fit
        keys = sorted((b.free, b.serial) for b in bins)
        by_serial = {b.serial: b for b in bins}
        for length, _, item in pending:
            pos = bisect.bisect_left(keys, (length, -1))
            if pos < len(keys):
                free, serial = keys.pop(pos)
                b = by_serial[serial]
            else:
                b = _Bin(self._serial, self.max_length)
                self._serial += 1
                by_serial[b.serial] = b
            b.items.append(item)
            b.free -= length
            if b.free > 0:
                bisect.insort(keys, (b.free, b.serial))
        all_bins = sorted(by_serial.values(), key=lambda b: b.serial)
        if final:
            self._open = []
            return [b.items for b in all_bins]
        # keep the `carry` emptiest bins open (they can still take small items), emit the rest
        keep = set(s for _, s in sorted(((b.free, b.serial) for b in all_bins if b.free > 0),
                                        key=lambda x: (-x[0], x[1]))[: self.carry])
        self._open = [b for b in all_bins if b.serial in keep]
        return [b.items for b in all_bins if b.serial not in keep]


def pack_lengths(lengths: Iterable[int], max_length: int, window: int, carry: int) -> list[list[int]]:
    """Bins of item indices for the given lengths (convenience for tests and planning)."""
    packer = BestFitPacker(max_length, window, carry)
    out: list[list[int]] = []
    for i, n in enumerate(lengths):
        out.extend(packer.add(i, int(n)))
    out.extend(packer.finish())
    return out


def concat_bin(pieces: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """input_ids, labels, doc_lengths of one packed sequence."""
    ids = np.concatenate([p[0] for p in pieces]).astype(np.int32, copy=False)
    labels = np.concatenate([p[1] for p in pieces]).astype(np.int32, copy=False)
    doc_lengths = np.fromiter((len(p[0]) for p in pieces), dtype=np.int32, count=len(pieces))
    return ids, labels, doc_lengths


def iter_packed(pieces: Iterable[tuple[np.ndarray, np.ndarray]], max_length: int, window: int,
                carry: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Stream (input_ids, labels, doc_lengths) sequences from a stream of (ids, labels) pieces."""
    packer = BestFitPacker(max_length, window, carry)
    for piece in pieces:
        for b in packer.add(piece, len(piece[0])):
            yield concat_bin(b)
    for b in packer.finish():
        yield concat_bin(b)


def iter_unpacked(pieces: Iterable[tuple[np.ndarray, np.ndarray]]) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """One piece per sequence (SFT default)."""
    for ids, labels in pieces:
        yield (np.asarray(ids, dtype=np.int32), np.asarray(labels, dtype=np.int32),
               np.array([len(ids)], dtype=np.int32))
