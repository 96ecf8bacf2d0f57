"""Tokenizer facts a model step needs: the SentencePiece pieces and the number of ids of a tokenizer directory,
and copying its files next to a model (the format itself is cpt.tokenizer's: spm.load_proto, hf.TOKENIZER_FILES)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from cpt.errors import ModelError
from cpt.tokenizer.hf import TOKENIZER_FILES
from cpt.tokenizer.hf import copy_tokenizer_files as _copy_files
from cpt.tokenizer.spm import load_proto

__all__ = ["TOKENIZER_FILES", "copy_tokenizer_files", "load_sp_proto", "tokenizer_pieces", "tokenizer_vocab_size"]


def load_sp_proto(tokenizer_dir: str | os.PathLike):
    """The SentencePiece ModelProto of a tokenizer directory (its tokenizer.model)."""
    path = Path(tokenizer_dir) / "tokenizer.model"
    if not path.is_file():
        raise ModelError(f"{path}: missing; a LLaMA tokenizer directory must contain tokenizer.model "
                         f"(SentencePiece). Point the config at the tokenizer stage's output directory")
    return load_proto(path)


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
    if not (src / "tokenizer.model").is_file():
        raise ModelError(f"{src}: no tokenizer.model to copy into {out}")
    copied = _copy_files(src, out)
    if "tokenizer.model" not in copied:
        raise ModelError(f"{src}: no tokenizer.model to copy into {out}")
    return copied

