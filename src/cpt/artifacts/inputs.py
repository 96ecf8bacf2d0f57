"""Finding and reading jsonl inputs safely: which files a path, directory or glob stands for (`expand_paths`: only
regular files; a FIFO, socket, device or broken link named like an input is an error naming them all, never skipped
and never opened, since a FIFO would block the reader), and their lines in bounded pieces (`iter_raw_lines`: no
line is held longer than MAX_LINE_BYTES + 1 bytes; cpt.artifacts.records refuses it as line_too_long)."""

from __future__ import annotations

import glob
import os
import stat
from pathlib import Path
from typing import Iterable, Iterator

from cpt.core.errors import RecordError

MAX_LINE_BYTES = 16 << 20  # a record longer than this is refused (line_too_long) before it is parsed


def expand_paths(paths: Iterable[str | os.PathLike], pattern: str = "*.jsonl") -> list[Path]:
    """Files as given; a directory stands for its `pattern` files (sorted, recursive); globs are expanded. The one
    place jsonl inputs are expanded (corpus paths, dataset inputs, cpt validate-records); a path that is neither a
    file, a directory nor a matching glob is a RecordError (missing_file)."""
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            found = regular_files(p.rglob(pattern), p)
            if not found:
                raise RecordError(p, None, "empty_file", f"directory holds no {pattern} file")
            out.extend(found)
        elif any(ch in str(p) for ch in "*?["):
            found = regular_files(map(Path, glob.glob(str(p), recursive=True)), p)
            if not found:
                raise RecordError(p, None, "empty_file", "glob matches no file")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        elif p.is_symlink() or p.exists():
            regular_files([p], p)
        else:
            raise RecordError(p, None, "missing_file", "no such file or directory")
    return out


def regular_files(candidates: Iterable[Path], where: str | os.PathLike) -> list[Path]:
    """The regular files among `candidates` (links followed), sorted; directories are passed over. Anything else
    (a FIFO would block the reader, a socket, a device, a broken link) is a RecordError (not_regular) that counts
    and names every one of them: an input is never skipped silently."""
    files, odd = [], []
    for q in candidates:
        try:
            mode = q.stat().st_mode
        except OSError:
            odd.append(f"{q} (broken link)")
            continue
        if stat.S_ISREG(mode):
            files.append(q)
        elif not stat.S_ISDIR(mode):
            kind = "FIFO" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode) else "device"
            odd.append(f"{q} ({kind})")
    if odd:
        raise RecordError(where, None, "not_regular", f"not_regular: {len(odd)} input(s) named like data files are "
                                                      f"not regular files: {', '.join(sorted(odd))}; remove them")
    return sorted(files)


def iter_raw_lines(f, limit: int | None = None) -> Iterator[bytes]:
    """The lines of a binary file, none held longer than `limit` (MAX_LINE_BYTES) + 1 bytes: the rest of an
    over-long line is read in pieces and dropped, so the line's check (line_too_long) sees `limit` + 1 bytes."""
    limit = MAX_LINE_BYTES if limit is None else limit
    while True:
        line = f.readline(limit + 1)
        if not line:
            return
        if len(line) > limit and not line.endswith(b"\n"):
            while True:
                rest = f.readline(1 << 20)
                if not rest or rest.endswith(b"\n"):
                    break
        yield line
