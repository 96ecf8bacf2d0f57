"""Glue between the corpus layout and the tokenizer steps (used by workflow/scripts/tokenizer_*.py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from cpt.errors import TokenizerError


def category_files(corpus_dir: str | os.PathLike, langs: Mapping[str, str], lang: str,
                   required: bool = True) -> list[Path]:
    """<corpus_dir>/<category>.jsonl of every category whose language is `lang`, sorted by category name."""
    files = [Path(corpus_dir) / f"{name}.jsonl" for name, lg in sorted(langs.items()) if lg == lang]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise TokenizerError(f"corpus files missing: {', '.join(missing)} (corpus stage output)")
    if required and not files:
        raise TokenizerError(f"corpus.categories: no category with lang {lang!r}; the tokenizer stage needs one")
    return files
