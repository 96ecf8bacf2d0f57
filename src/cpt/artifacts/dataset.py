"""A dataset stage directory (results/<exp>/dataset/<stage>/), the contract between the dataset box that writes it
and the trainer that reads it: bucket-NNNNN/ (`datasets` save_to_disk directories, in training order) and
manifest.json (buckets, sequence and token counts, max_length, the tokenizer's identity, settings, skips, and
"files": every file of the buckets with its size, and the sha256 of the small ones). The manifest is removed before
a rebuild touches the buckets and written last, and a reader refuses buckets that do not match it
(`check_files`): an interrupted or concurrent rebuild is never read as a dataset.

Bucket columns: input_ids, labels, doc_lengths, each list<int32>; sequences are not padded; labels IGNORE_INDEX
(-100) = no loss; sum(doc_lengths) == len(input_ids).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from cpt.core.errors import DatasetError

IGNORE_INDEX = -100  # a label with no loss (PyTorch's cross-entropy ignore_index)
BUCKET_COLUMNS = ("input_ids", "labels", "doc_lengths")
MANIFEST = "manifest.json"


def bucket_name(i: int) -> str:
    return f"bucket-{i:05d}"


HASHED_BELOW = 1 << 20  # files smaller than this (the buckets' JSON: row counts, fingerprints) are hashed too


def file_table(stage_dir: str | os.PathLike) -> dict:
    """{bucket-NNNNN/<file>: {"bytes": n[, "sha256": hex]}} of every file under the stage's bucket directories."""
    root = Path(stage_dir)
    table = {}
    for f in sorted(root.glob("bucket-*/**/*")):
        if f.is_file():
            entry = {"bytes": f.stat().st_size}
            if entry["bytes"] < HASHED_BELOW:
                entry["sha256"] = hashlib.sha256(f.read_bytes()).hexdigest()
            table[f.relative_to(root).as_posix()] = entry
    return table


def check_files(stage_dir: str | os.PathLike, manifest: dict) -> None:
    """DatasetError unless the bucket files are exactly those the manifest lists (sizes, small files' hashes).
    A manifest without "files" (written before they were recorded) is not checked."""
    listed = manifest.get("files")
    if listed is None:
        return
    found = file_table(stage_dir)
    problems = [f"{n}: not in the manifest" for n in sorted(set(found) - set(listed))]
    problems += [f"{n}: listed but missing" for n in sorted(set(listed) - set(found))]
    for n in sorted(set(found) & set(listed)):
        if found[n]["bytes"] != listed[n].get("bytes"):
            problems.append(f"{n}: {found[n]['bytes']} bytes, the manifest says {listed[n].get('bytes')}")
        elif "sha256" in listed[n] and found[n].get("sha256") != listed[n]["sha256"]:
            problems.append(f"{n}: content differs from the manifest (sha256)")
    if problems:
        raise DatasetError(f"{Path(stage_dir) / MANIFEST}: the dataset's files do not match its manifest "
                           f"({len(problems)} difference(s): {'; '.join(problems[:5])}); an interrupted or "
                           f"concurrent rebuild? Rebuild this stage (cpt prepare-pretrain / the dataset rule)")


def write_manifest(stage_dir: str | os.PathLike, manifest: dict) -> Path:
    """Write manifest.json (atomic) with the table of the bucket files as they are now (`file_table`)."""
    path = Path(stage_dir) / MANIFEST
    manifest = {**manifest, "files": file_table(stage_dir)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False, sort_keys=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def read_manifest(stage_dir: str | os.PathLike) -> dict:
    path = Path(stage_dir) / MANIFEST
    if not path.is_file():
        raise DatasetError(f"{path}: missing; run `cpt prepare-pretrain` (or the dataset rule) for this stage first")
    with open(path, encoding="utf-8") as f:
        manifest = json.load(f)
    for key in ("buckets", "num_sequences", "num_tokens", "max_length", "tokenizer"):
        if key not in manifest:
            raise DatasetError(f"{path}: has no {key!r}; it was not written by cpt.dataset (re-run the stage)")
    return manifest
