"""The tokenizer families, by name, and opening an HF tokenizer directory as an object of its family. A new family
is one module (a TokenizerFamily subclass) plus its line here."""

from __future__ import annotations

import os

from cpt.core.errors import TokenizerError
from cpt.tokenizer.bpe import ByteLevelBPETokenizer
from cpt.tokenizer.family import FAMILIES, TokenizerFamily, family_of
from cpt.tokenizer.spm_family import SentencePieceTokenizer

CLASSES: dict[str, type[TokenizerFamily]] = {"sentencepiece": SentencePieceTokenizer, "bpe": ByteLevelBPETokenizer}
assert tuple(CLASSES) == FAMILIES


def family_class(name: str) -> type[TokenizerFamily]:
    if name not in CLASSES:
        raise TokenizerError(f"tokenizer family {name!r} is not one of {', '.join(FAMILIES)}")
    return CLASSES[name]


def open_tokenizer(directory: str | os.PathLike) -> TokenizerFamily:
    """The tokenizer of an HF directory, as an object of its family."""
    return family_class(family_of(directory)).load(directory)
