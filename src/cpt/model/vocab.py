"""Tokenizer facts a model step needs: the SentencePiece pieces, the number of ids, the files of a tokenizer
directory (read with sentencepiece's protobuf; no dependency on cpt.tokenizer)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from cpt.errors import ModelError

# files that make up a tokenizer directory (copied from tokenizer dirs, never from model dirs)
TOKENIZER_FILES = (
    "tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
)


def load_sp_proto(tokenizer_dir: str | os.PathLike):
    """The SentencePiece ModelProto of a tokenizer directory (its tokenizer.model)."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    path = Path(tokenizer_dir) / "tokenizer.model"
    if not path.is_file():
        raise ModelError(f"{path}: missing; a LLaMA tokenizer directory must contain tokenizer.model "
                         f"(SentencePiece). Point the config at the tokenizer stage's output directory")
    proto = pb.ModelProto()
    try:
        proto.ParseFromString(path.read_bytes())
    except Exception as exc:  # protobuf raises DecodeError; anything else is the same failure
        raise ModelError(f"{path}: not a SentencePiece model ({exc})") from exc
    return proto


def tokenizer_pieces(tokenizer_dir: str | os.PathLike) -> list[str]:
    return [p.piece for p in load_sp_proto(tokenizer_dir).pieces]


def tokenizer_vocab_size(tokenizer_dir: str | os.PathLike) -> int:
    """Number of ids the tokenizer can produce: SentencePiece pieces plus added tokens beyond them."""
    n = len(load_sp_proto(tokenizer_dir).pieces)
    cfg_path = Path(tokenizer_dir) / "tokenizer_config.json"
    if cfg_path.is_file():
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        for key in (cfg.get("added_tokens_decoder") or {}):
            n = max(n, int(key) + 1)
    added = Path(tokenizer_dir) / "added_tokens.json"
    if added.is_file():
        for idx in json.loads(added.read_text(encoding="utf-8")).values():
            n = max(n, int(idx) + 1)
    return n


def copy_tokenizer_files(tokenizer_dir: str | os.PathLike, out_dir: str | os.PathLike) -> list[str]:
    """Copy the tokenizer files of `tokenizer_dir` into `out_dir` (overwriting); returns the names copied."""
    src, out = Path(tokenizer_dir), Path(out_dir)
    copied = []
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, out / name)
            copied.append(name)
    if "tokenizer.model" not in copied:
        raise ModelError(f"{src}: no tokenizer.model to copy into {out}")
    return copied

