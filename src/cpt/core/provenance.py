"""provenance.json: what produced an artifact directory (config section, code version, inputs, versions, time)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

FULL_HASH_LIMIT = 256 * 1024 * 1024  # files above this size are described by size + a hash of head and tail
LIBRARIES = (
    "torch", "transformers", "tokenizers", "sentencepiece", "datasets", "pyarrow", "colossalai",
    "snakemake", "numpy", "safetensors",
)


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def config_hash(section: Any) -> str:
    """sha256 of the canonical JSON of a config section (key order does not matter)."""
    return hashlib.sha256(canonical_json(section).encode("utf-8")).hexdigest()


def file_digest(path: str | os.PathLike, limit: int = FULL_HASH_LIMIT) -> dict:
    """sha256 of a file; for files over `limit`, a hash of the first and last 16 MiB plus the size."""
    p = Path(path)
    size = p.stat().st_size
    h = hashlib.sha256()
    with open(p, "rb") as f:
        if size <= limit:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
            return {"sha256": h.hexdigest(), "bytes": size}
        h.update(f.read(16 << 20))
        f.seek(size - (16 << 20))
        h.update(f.read(16 << 20))
    return {"sha256_head_tail": h.hexdigest(), "bytes": size}


def describe_input(path: str | os.PathLike) -> dict:
    """Digest of a file, or of every file under a directory (sorted, relative names)."""
    p = Path(path)
    if not p.exists():
        return {"missing": True}
    if p.is_file():
        return file_digest(p)
    files = sorted(q for q in p.rglob("*") if q.is_file() and q.name != "provenance.json")
    h = hashlib.sha256()
    total = 0
    for q in files:
        d = file_digest(q)
        total += d["bytes"]
        h.update(str(q.relative_to(p)).encode())
        h.update(next(v for k, v in d.items() if k.startswith("sha256")).encode())
    return {"tree_sha256": h.hexdigest(), "files": len(files), "bytes": total}


def code_version(repo: str | os.PathLike | None = None) -> str:
    """`git describe --always --dirty` of the project, or the package version outside a git checkout."""
    from cpt import __version__

    cwd = Path(repo) if repo else Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--tags"], cwd=cwd, capture_output=True, text=True,
            timeout=10,
        )
        if out.returncode == 0 and out.stdout.strip():
            return f"{__version__}+g{out.stdout.strip()}"
    except (OSError, subprocess.TimeoutExpired):
        pass
    return __version__


def library_versions(names: Iterable[str] = LIBRARIES) -> dict:
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def build_provenance(
    stage: str,
    section: Any,
    inputs: Mapping[str, str | os.PathLike] | None = None,
    started: float | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict:
    record = {
        "stage": stage,
        "config": section,
        "config_sha256": config_hash(section),
        "code_version": code_version(),
        "inputs": {name: {"path": str(p), **describe_input(p)} for name, p in (inputs or {}).items()},
        "versions": library_versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if started is not None:
        record["wall_seconds"] = round(time.time() - started, 3)
    if extra:
        record.update(extra)
    return record


def write_provenance(out_dir: str | os.PathLike, stage: str, section: Any, inputs=None, started=None,
                     extra=None, filename: str = "provenance.json") -> Path:
    """Write provenance.json into an artifact directory (or next to an artifact file)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / filename
    record = build_provenance(stage, section, inputs, started, extra)
    path.write_text(json.dumps(record, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    return path
