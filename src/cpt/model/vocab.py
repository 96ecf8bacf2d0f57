"""Tokenizer facts a model step needs, through the tokenizer-family protocol (cpt.tokenizer.family): the pieces and
the number of ids of a tokenizer directory, old-token ids of new pieces, and copying its files next to a model."""

from __future__ import annotations

import json
import os
from pathlib import Path

from cpt.core.errors import ModelError, TokenizerError
from cpt.tokenizer.hf import TOKENIZER_FILES
from cpt.tokenizer.hf import copy_tokenizer_files as _copy_files

__all__ = ["TOKENIZER_FILES", "copy_tokenizer_files", "open_model_tokenizer", "tokenizer_pieces",
           "tokenizer_vocab_size"]


def open_model_tokenizer(tokenizer_dir: str | os.PathLike):
    """The tokenizer of a directory as a cpt.tokenizer.family object; ModelError when it has none."""
    from cpt.tokenizer.registry import open_tokenizer

    try:
        return open_tokenizer(tokenizer_dir)
    except TokenizerError as exc:
        raise ModelError(f"{exc}. Point the config at the tokenizer stage's output directory") from None


def tokenizer_pieces(tokenizer_dir: str | os.PathLike) -> list[str]:
    return open_model_tokenizer(tokenizer_dir).pieces()


def tokenizer_vocab_size(tokenizer_dir: str | os.PathLike) -> int:
    """Number of ids the tokenizer can produce: its pieces plus added tokens beyond them."""
    n = len(open_model_tokenizer(tokenizer_dir))
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
    if not ((src / "tokenizer.model").is_file() or (src / "tokenizer.json").is_file()):
        raise ModelError(f"{src}: no tokenizer.model or tokenizer.json to copy into {out}")
    return _copy_files(src, out)
