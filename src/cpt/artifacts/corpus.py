"""A corpus directory and its records, the one owner of: which categories it has (`category_files`), the
language of each category (`category_languages`, config key corpus.categories.<name>.lang, spelled `lang`
everywhere a config or manifest names it), the files of one language (`language_files`) and the text of a record
(`record_text`).

A corpus directory (results/<exp>/corpus/{raw,train,heldout}/, a cleaned one, a user's) holds one
`<category>.jsonl` per category of {"source", "target", "category"} records (cpt.artifacts.records validates them).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from cpt.core.errors import DataSourceError

LANGUAGES = ("zh", "en")


def category_languages(config: Mapping[str, Any]) -> dict[str, str]:
    """category -> "zh" | "en": corpus.categories.<name>.lang (what every step that needs a language reads)."""
    return {name: c["lang"] for name, c in config["corpus"]["categories"].items()}


def category_files(directory: str | os.PathLike) -> dict[str, Path]:
    """{category: <directory>/<category>.jsonl} of a corpus directory: its *.jsonl files, not recursive, sorted by
    name. A FIFO, socket, device or broken link named *.jsonl there is a RecordError naming them all."""
    from cpt.artifacts.inputs import regular_files

    return {p.stem: p for p in regular_files(Path(directory).glob("*.jsonl"), directory)}


def language_files(corpus_dir: str | os.PathLike, langs: Mapping[str, str], lang: str,
                   required: bool = True) -> list[Path]:
    """<corpus_dir>/<category>.jsonl of every category whose language is `lang`, sorted by category name."""
    files = [Path(corpus_dir) / f"{name}.jsonl" for name, lg in sorted(langs.items()) if lg == lang]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise DataSourceError(f"corpus files missing: {', '.join(missing)} (corpus stage output)")
    if required and not files:
        raise DataSourceError(f"corpus.categories: no category with lang {lang!r}; this step needs one")
    return files


def record_text(rec: Mapping[str, Any], separator: str = "") -> str:
    """The text of a pretraining record: source then target. With the default separator "" it is exactly the
    text the packer trains on (source and target tokenized back to back); the clean stage joins them with "\\n" so
    that filters and near-duplicate shingles do not run across the boundary."""
    source = rec.get("source") or ""
    target = rec.get("target") or ""
    return f"{source}{separator}{target}" if source else target
