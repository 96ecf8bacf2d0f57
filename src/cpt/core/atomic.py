"""Atomic file writes: the new content goes to a hidden temporary file next to the target, is flushed to disk, then
renamed over it, so a reader (or a rerun after kill -9) sees the old file or the new one, never a mix."""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json_atomic(path: str | os.PathLike, obj, default=None) -> None:
    """JSON (sorted keys, indented) written atomically; `default`: json.dumps' converter of other types."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=default, ensure_ascii=False) + "\n")
