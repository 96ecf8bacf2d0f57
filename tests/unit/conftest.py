"""Fixtures shared by the unit tests of one area."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def tokenizer_pair(tmp_path_factory):
    """(base dir, extended dir, new pieces): a tiny SentencePiece tokenizer and its extension (_spm_fixtures)."""
    import _spm_fixtures as fx

    return fx.make_tokenizer_pair(tmp_path_factory.mktemp("toks"))
