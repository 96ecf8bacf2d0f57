"""The SentencePiece family (LLaMA-2): the spm / expand / hf modules behind the TokenizerFamily protocol, unchanged.

The object holds a ModelProto (and a processor built from it). Pieces are SentencePiece pieces ("▁中国"); a piece's
text is the piece with "▁" written as a space. `extend` is expand.extend (ranked scores, exact reachability with
repair/drop/replace, character closure); `save` is hf.save_hf_tokenizer; agreement is sentencepiece vs HF slow and
fast (hf.check_agreement).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from cpt.tokenizer.family import TokenizerFamily, write_chat_template
from cpt.tokenizer.spm import BYTE, CONTROL, SPIECE, UNKNOWN, ModelProto, copy_proto, load_proto, processor


class SentencePieceTokenizer(TokenizerFamily):
    family = "sentencepiece"

    def __init__(self, proto: ModelProto, directory: str | os.PathLike | None = None):
        self.proto = proto
        self.directory = Path(directory) if directory is not None else None
        self._sp = None
        ts = proto.trainer_spec
        self.bos_id = ts.bos_id if ts.bos_id >= 0 else None
        self.eos_id = ts.eos_id if ts.eos_id >= 0 else None
        self.unk_id = ts.unk_id if ts.unk_id >= 0 else None
        self.pad_id = ts.pad_id if ts.pad_id >= 0 else None

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "SentencePieceTokenizer":
        d = Path(directory)
        path = d / "tokenizer.model" if d.is_dir() else d
        return cls(load_proto(path), d if d.is_dir() else d.parent)

    @property
    def sp(self):
        """The sentencepiece processor of this model (built once)."""
        if self._sp is None:
            self._sp = processor(self.proto)
        return self._sp

    def pieces(self) -> list[str]:
        return [p.piece for p in self.proto.pieces]

    def __len__(self) -> int:
        return len(self.proto.pieces)

    def piece_texts(self) -> list[str | None]:
        return [None if p.type in (BYTE, CONTROL, UNKNOWN) else p.piece.replace(SPIECE, " ")
                for p in self.proto.pieces]

    def base_strings(self) -> list[str]:
        """SentencePiece pieces as they are (candidates are normalised to the same form first)."""
        return self.pieces()

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        texts = list(texts)
        return [list(x) for x in self.sp.encode(texts, out_type=int)] if texts else []

    def subword_ids(self, pieces: Sequence[str], *, dummy_prefix: bool) -> list[list[int]]:
        """The reference's old-tokenizer call on each piece string (no bos/eos); without the dummy prefix when
        dummy_prefix is False."""
        if not pieces:
            return []
        if dummy_prefix:
            return self.encode(list(pieces))
        proto = copy_proto(self.proto)
        proto.normalizer_spec.add_dummy_prefix = False
        return [list(x) for x in processor(proto).encode(list(pieces), out_type=int)]

    def extend(self, pieces: Sequence[str], reserve: Sequence[str] = (), vocab_size: int | None = None,
               **options: Any) -> tuple["SentencePieceTokenizer", dict]:
        """expand.extend; options (config tokenizer.expansion, defaults filled in): score, unreachable,
        max_repair_pieces, max_rounds."""
        from cpt.core.schema import complete
        from cpt.tokenizer.spm_extend import extend

        opts = complete("tokenizer.expansion", options)
        keys = ("score", "unreachable", "max_repair_pieces", "max_rounds")
        proto, report = extend(self.proto, pieces, reserve, vocab_size, **{k: opts[k] for k in keys})
        return SentencePieceTokenizer(proto), report

    def unreachable(self, start: int) -> list[int]:
        from cpt.tokenizer.spm_extend import find_unreachable

        return find_unreachable(self.proto, start, self.sp)

    def english_check(self, extended: "SentencePieceTokenizer", texts: Sequence[str]) -> dict:
        from cpt.tokenizer.spm_extend import english_check

        return english_check(self.sp, extended.sp, texts)

    def save(self, out_dir: str | os.PathLike, model_max_length: int = 4096,
             chat_template: str | None = None) -> Path:
        from cpt.tokenizer.hf import save_hf_tokenizer

        out = save_hf_tokenizer(self.proto, out_dir, model_max_length)
        write_chat_template(out, chat_template)
        self.directory = Path(out)
        return out

    def check_agreement(self, out_dir: str | os.PathLike, texts: Sequence[str], what: str = "tokenizer",
                        raise_on_mismatch: bool = True) -> dict:
        from cpt.tokenizer.hf import check_agreement

        return check_agreement(out_dir, self.sp, texts, what=what, raise_on_mismatch=raise_on_mismatch)
