"""The tokenizer-family seam: one small protocol the rest of the pipeline talks to.

A *family* is a kind of tokenizer model with its own piece representation and merge rule:

  sentencepiece   LLaMA-2: a SentencePiece BPE tokenizer.model (pieces "▁中国", scores, byte fallback);
                  cpt.tokenizer.spm_family wraps the spm / expand / hf modules unchanged
  bpe             byte-level BPE in Hugging Face tokenizer.json form (LLaMA-3, SmolLM2, Qwen, GPT-2): pieces are
                  GPT-2 byte-level strings, merges are rank-ordered pairs, a regex pre-tokenizer splits the text
                  before BPE (cpt.tokenizer.bpe)

Every family object offers the same operations:

  load(dir)                          open an HF tokenizer directory of this family (`open_tokenizer` picks the family)
  pieces()                           the vocabulary in id order, in the family's own representation
  piece_texts()                      the text each id stands for (None: special tokens, bytes, partial characters)
  base_strings()                     what candidate pieces are compared with ("in_base")
  encode(texts)                      ids of each text, no bos/eos, special-token text stays text
  subword_ids(pieces, dummy_prefix)  ids of other pieces (e.g. a new tokenizer's) under this tokenizer
  extend(pieces, reserve, vocab_size, **options) -> (extended tokenizer, report)
                                     append new pieces so the normal encoding path produces them, exact size
  unreachable(start)                 ids >= start that no text produces (checked by encoding them in context)
  english_check(extended, texts)     identical ids on every text, else TokenizerError
  save(dir, chat_template=...)       write an HF directory AutoTokenizer.from_pretrained opens (no remote code)
  check_agreement(dir, texts)        the saved directory's HF tokenizer(s) against the family's reference encoder
  bos_id / eos_id / unk_id / pad_id  special ids (None where the tokenizer has none)
"""

from __future__ import annotations

import abc
import json
import os
from pathlib import Path
from typing import Any, ClassVar, Sequence

from cpt.core.errors import TokenizerError

FAMILIES = ("sentencepiece", "bpe")


def identical_ids(texts: Sequence[str], a: Sequence[Sequence[int]], b: Sequence[Sequence[int]]) -> dict:
    """The English check's verdict: base ids `a` and extended ids `b` of every text are identical, else
    TokenizerError naming the first difference."""
    diffs = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
    if diffs:
        i = diffs[0]
        raise TokenizerError(f"extended tokenizer changes English: {len(diffs)} of {len(texts)} lines differ; "
                             f"first {texts[i][:120]!r}: base {a[i][:30]} vs extended {b[i][:30]}")
    return {"lines": len(texts), "tokens": sum(map(len, a)), "identical": True}


class TokenizerFamily(abc.ABC):
    """One tokenizer of one family (see the module docstring for the protocol)."""

    family: ClassVar[str]
    directory: Path | None = None

    # ------------------------------------------------------------------ loading and facts
    @classmethod
    @abc.abstractmethod
    def load(cls, directory: str | os.PathLike) -> "TokenizerFamily":
        """Open an HF tokenizer directory of this family."""

    @abc.abstractmethod
    def pieces(self) -> list[str]:
        """The vocabulary in id order (the family's own representation)."""

    @abc.abstractmethod
    def piece_texts(self) -> list[str | None]:
        """For each id, the text it stands for, or None (special tokens, bytes, partial characters)."""

    def base_strings(self) -> list[str]:
        """The strings a candidate piece is compared with to be rejected as already in the vocabulary."""
        return [t for t in self.piece_texts() if t]

    def __len__(self) -> int:
        return len(self.pieces())

    @property
    def vocab_size(self) -> int:
        return len(self)

    bos_id: int | None = None
    eos_id: int | None = None
    unk_id: int | None = None
    pad_id: int | None = None

    # ------------------------------------------------------------------ encoding
    @abc.abstractmethod
    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Ids of every text (no bos/eos; special-token text is encoded as text)."""

    @abc.abstractmethod
    def subword_ids(self, pieces: Sequence[str], *, dummy_prefix: bool) -> list[list[int]]:
        """Ids of each piece (another tokenizer's pieces of this family, e.g. new ones) under this tokenizer."""

    # ------------------------------------------------------------------ extension
    @abc.abstractmethod
    def extend(self, pieces: Sequence[str], reserve: Sequence[str] = (), vocab_size: int | None = None,
               **options: Any) -> tuple["TokenizerFamily", dict]:
        """This tokenizer with new pieces (texts) appended after the existing ids, exactly `vocab_size` ids,
        every new piece reachable; reserve pieces replace dropped ones."""

    @abc.abstractmethod
    def unreachable(self, start: int) -> list[int]:
        """Ids >= start that no text produces."""

    def english_check(self, extended: "TokenizerFamily", texts: Sequence[str]) -> dict:
        """Identical ids on every text under this (base) and the extended tokenizer, else TokenizerError."""
        texts = list(texts)
        return identical_ids(texts, self.encode(texts), extended.encode(texts))

    # ------------------------------------------------------------------ HF directories
    @abc.abstractmethod
    def save(self, out_dir: str | os.PathLike, model_max_length: int = 4096,
             chat_template: str | None = None) -> Path:
        """Write an HF tokenizer directory (chat_template, when given, goes into tokenizer_config.json)."""

    @abc.abstractmethod
    def check_agreement(self, out_dir: str | os.PathLike, texts: Sequence[str], what: str = "tokenizer",
                        raise_on_mismatch: bool = True) -> dict:
        """The HF tokenizer(s) of the saved directory must encode every text as this tokenizer does."""


def is_byte_level(data: dict) -> bool:
    """Whether a tokenizer.json (parsed) pre-tokenizes with ByteLevel (alone or inside a Sequence)."""
    pre = data.get("pre_tokenizer") or {}
    parts = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    return any((p or {}).get("type") == "ByteLevel" for p in parts)


def family_of(directory: str | os.PathLike) -> str:
    """Which family an HF tokenizer directory belongs to: tokenizer.model -> sentencepiece; a tokenizer.json with
    a BPE model over a ByteLevel pre-tokenizer -> bpe."""
    d = Path(directory)
    if (d / "tokenizer.model").is_file():
        return "sentencepiece"
    path = d / "tokenizer.json"
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise TokenizerError(f"{path}: cannot be read ({exc})") from None
        if (data.get("model") or {}).get("type") == "BPE" and is_byte_level(data):
            return "bpe"
        raise TokenizerError(f"{path}: not a byte-level BPE tokenizer (model {data.get('model', {}).get('type')!r}); "
                             f"supported families: {', '.join(FAMILIES)}")
    raise TokenizerError(f"{d}: no tokenizer.model (SentencePiece) and no tokenizer.json (byte-level BPE); point it at "
                         f"a Hugging Face tokenizer directory")




def model_file(directory: str | os.PathLike) -> Path:
    """The file that defines the tokenizer of an HF directory (for provenance): tokenizer.model or tokenizer.json."""
    d = Path(directory)
    return d / "tokenizer.model" if (d / "tokenizer.model").is_file() else d / "tokenizer.json"


def chat_template_of(directory: str | os.PathLike | None) -> str | list | None:
    """The chat_template of an HF tokenizer directory's tokenizer_config.json (None: none, or no such file)."""
    path = Path(directory) / "tokenizer_config.json" if directory is not None else None
    if path is None or not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8")).get("chat_template") or None


def write_chat_template(out_dir: str | os.PathLike, chat_template: str | None) -> None:
    """Put `chat_template` into <out_dir>/tokenizer_config.json (None: leave the file as it is)."""
    if chat_template is None:
        return
    path = Path(out_dir) / "tokenizer_config.json"
    cfg = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    cfg["chat_template"] = chat_template
    path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
