"""SentencePiece ModelProto I/O, LLaMA-style model construction and checks, and a reference BPE encoder.

Works on the protobuf directly (sentencepiece's sentencepiece_model_pb2), never through transformers' slow tokenizer
internals, so it behaves the same with transformers 4.x and 5.x.

SentencePiece BPE at encode time (bpe_model.cc): the normalised text ("▁" dummy prefix, spaces -> "▁") is split
into characters; repeatedly the adjacent pair whose concatenation is a vocabulary piece with the highest score is
merged (ties: the leftmost pair); what remains out of vocabulary falls back to byte pieces. `bpe_segment` is a
plain-Python copy of that rule used to *explain* segmentations (merge chains, repairs); every verdict that matters
is checked with the real sentencepiece library.
"""

from __future__ import annotations

import heapq
import os
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from sentencepiece import SentencePieceProcessor
from sentencepiece import sentencepiece_model_pb2 as sp_pb2

from cpt.core.errors import TokenizerError

SPIECE = "\u2581"  # "▁"
NORMAL = sp_pb2.ModelProto.SentencePiece.NORMAL
UNKNOWN = sp_pb2.ModelProto.SentencePiece.UNKNOWN
CONTROL = sp_pb2.ModelProto.SentencePiece.CONTROL
USER_DEFINED = sp_pb2.ModelProto.SentencePiece.USER_DEFINED
UNUSED = sp_pb2.ModelProto.SentencePiece.UNUSED
BYTE = sp_pb2.ModelProto.SentencePiece.BYTE
TYPE_NAMES = {NORMAL: "NORMAL", UNKNOWN: "UNKNOWN", CONTROL: "CONTROL", USER_DEFINED: "USER_DEFINED",
              UNUSED: "UNUSED", BYTE: "BYTE"}
ModelProto = sp_pb2.ModelProto


def load_proto(path_or_bytes: str | os.PathLike | bytes) -> ModelProto:
    """Parse a tokenizer.model (path or bytes)."""
    data = path_or_bytes if isinstance(path_or_bytes, (bytes, bytearray)) else Path(path_or_bytes).read_bytes()
    proto = ModelProto()
    try:
        proto.ParseFromString(bytes(data))
    except Exception as exc:  # protobuf raises DecodeError; keep the family
        where = "<bytes>" if isinstance(path_or_bytes, (bytes, bytearray)) else str(path_or_bytes)
        raise TokenizerError(f"{where}: not a SentencePiece model ({exc}); point the config at a tokenizer.model")
    if not proto.pieces:
        where = "<bytes>" if isinstance(path_or_bytes, (bytes, bytearray)) else str(path_or_bytes)
        raise TokenizerError(f"{where}: SentencePiece model has no pieces")
    return proto


def save_proto(proto: ModelProto, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(proto.SerializeToString())
    return path


def copy_proto(proto: ModelProto) -> ModelProto:
    out = ModelProto()
    out.CopyFrom(proto)
    return out


def processor(proto: ModelProto | str | os.PathLike) -> SentencePieceProcessor:
    """A SentencePieceProcessor for a ModelProto (or a tokenizer.model path)."""
    sp = SentencePieceProcessor()
    if isinstance(proto, ModelProto):
        sp.LoadFromSerializedProto(proto.SerializeToString())
    else:
        sp.Load(str(proto))
    return sp


def llama_proto(pieces: Sequence[str], scores: Sequence[float], types: Sequence[int]) -> ModelProto:
    """A LLaMA-style SentencePiece BPE model from a piece table.

    BPE, byte_fallback, identity normaliser, add_dummy_prefix on, remove_extra_whitespaces off, digits split,
    unk/bos/eos = 0/1/2 (<unk>, <s>, </s>), no pad. Types follow SentencePiece's numbering (NORMAL 1, UNKNOWN 2,
    CONTROL 3, USER_DEFINED 4, UNUSED 5, BYTE 6), which GGUF shares.
    """
    if not (len(pieces) == len(scores) == len(types)):
        raise TokenizerError(f"piece table lengths differ: {len(pieces)} pieces, {len(scores)} scores, "
                             f"{len(types)} types")
    proto = ModelProto()
    ts = proto.trainer_spec
    ts.model_type = sp_pb2.TrainerSpec.BPE
    ts.vocab_size = len(pieces)
    ts.byte_fallback = True
    ts.split_digits = True
    ts.split_by_unicode_script = True
    ts.split_by_number = True
    ts.split_by_whitespace = True
    ts.allow_whitespace_only_pieces = True
    ts.max_sentencepiece_length = 16
    ts.character_coverage = 0.99995
    ts.vocabulary_output_piece_score = True
    ts.hard_vocab_limit = True
    ts.unk_id, ts.bos_id, ts.eos_id, ts.pad_id = 0, 1, 2, -1
    ts.unk_piece, ts.bos_piece, ts.eos_piece, ts.pad_piece = "<unk>", "<s>", "</s>", "<pad>"
    ts.unk_surface = " \u2047 "
    ns = proto.normalizer_spec
    ns.name = "identity"
    ns.precompiled_charsmap = b""
    ns.add_dummy_prefix = True
    ns.remove_extra_whitespaces = False
    ns.escape_whitespaces = True
    for piece, score, typ in zip(pieces, scores, types):
        p = proto.pieces.add()
        p.piece = piece
        p.score = float(score)
        p.type = int(typ)
    validate_llama_proto(proto, "<rebuilt model>")
    return proto


def validate_llama_proto(proto: ModelProto, where: str) -> None:
    """Raise TokenizerError unless the model is a LLaMA-style SentencePiece BPE model."""
    problems = []
    ts, ns = proto.trainer_spec, proto.normalizer_spec
    if ts.model_type != sp_pb2.TrainerSpec.BPE:
        problems.append(f"model_type is {sp_pb2.TrainerSpec.ModelType.Name(ts.model_type)}, not BPE")
    if not ts.byte_fallback:
        problems.append("byte_fallback is off")
    if not ns.add_dummy_prefix:
        problems.append("add_dummy_prefix is off")
    expected = {0: ("<unk>", UNKNOWN), 1: ("<s>", CONTROL), 2: ("</s>", CONTROL)}
    for i, (piece, typ) in expected.items():
        if len(proto.pieces) <= i or proto.pieces[i].piece != piece or proto.pieces[i].type != typ:
            got = (proto.pieces[i].piece, TYPE_NAMES.get(proto.pieces[i].type)) if len(proto.pieces) > i else None
            problems.append(f"id {i} should be {piece} ({TYPE_NAMES[typ]}), is {got}")
    byte_pieces = {p.piece for p in proto.pieces if p.type == BYTE}
    missing = [f"<0x{b:02X}>" for b in range(256) if f"<0x{b:02X}>" not in byte_pieces]
    if missing:
        problems.append(f"{len(missing)} of 256 byte pieces missing (e.g. {missing[0]})")
    seen = set()
    dups = []
    for p in proto.pieces:
        if p.piece in seen:
            dups.append(p.piece)
        seen.add(p.piece)
    if dups:
        problems.append(f"{len(dups)} duplicate pieces (e.g. {dups[0]!r})")
    if problems:
        raise TokenizerError(f"{where}: not a LLaMA-style SentencePiece BPE tokenizer: " + "; ".join(problems))


def piece_table(proto: ModelProto) -> dict[str, int]:
    """piece -> id."""
    return {p.piece: i for i, p in enumerate(proto.pieces)}


def merge_scores(proto: ModelProto) -> dict[str, float]:
    """Pieces a BPE merge can produce (NORMAL and USER_DEFINED) -> score."""
    return {p.piece: p.score for p in proto.pieces if p.type in (NORMAL, USER_DEFINED)}


def normalize(text: str, add_dummy_prefix: bool = True) -> str:
    """LLaMA's identity normalisation: spaces -> "▁", plus the dummy prefix."""
    text = text.replace(" ", SPIECE)
    return SPIECE + text if add_dummy_prefix and text else text


def bpe_segment(symbols: str | Sequence[str], scores: Mapping[str, float]) -> list[str]:
    """SentencePiece's BPE merge rule on an already normalised string (no byte fallback).

    Start from characters; repeatedly merge the adjacent pair whose concatenation is in `scores` with the highest
    score, the leftmost such pair on ties. Returns the final symbols (which may be out of vocabulary).
    """
    syms = list(symbols)
    n = len(syms)
    if n < 2:
        return syms
    prev = list(range(-1, n - 1))
    nxt = list(range(1, n + 1))
    nxt[-1] = -1
    alive = [True] * n
    heap: list[tuple[float, int, int, str]] = []

    def push(left: int) -> None:
        right = nxt[left]
        if right < 0:
            return
        merged = syms[left] + syms[right]
        score = scores.get(merged)
        if score is not None:
            heapq.heappush(heap, (-score, left, right, merged))

    for i in range(n - 1):
        push(i)
    while heap:
        _, left, right, merged = heapq.heappop(heap)
        if not alive[left] or not alive[right] or nxt[left] != right or syms[left] + syms[right] != merged:
            continue
        syms[left] = merged
        alive[right] = False
        nxt[left] = nxt[right]
        if nxt[right] >= 0:
            prev[nxt[right]] = left
        if prev[left] >= 0:
            push(prev[left])
        push(left)
    return [s for s, a in zip(syms, alive) if a]


def encode_ids(sp: SentencePieceProcessor, texts: Iterable[str]) -> list[list[int]]:
    return sp.encode(list(texts), out_type=int)
