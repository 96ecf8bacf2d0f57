"""A dataset stage directory (results/<exp>/dataset/<stage>/), the contract between the dataset box that writes it
and the trainer that reads it: bucket-NNNNN/ (`datasets` save_to_disk directories, in training order) and
manifest.json (buckets, sequence and token counts, max_length, the tokenizer's identity, settings, skips).

Bucket columns: input_ids, labels, doc_lengths, each list<int32>; sequences are not padded; labels IGNORE_INDEX
(-100) = no loss; sum(doc_lengths) == len(input_ids).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cpt.core.errors import DatasetError

IGNORE_INDEX = -100  # a label with no loss (PyTorch's cross-entropy ignore_index)
BUCKET_COLUMNS = ("input_ids", "labels", "doc_lengths")
MANIFEST = "manifest.json"


def bucket_name(i: int) -> str:
    return f"bucket-{i:05d}"


def write_manifest(stage_dir: str | os.PathLike, manifest: dict) -> Path:
    path = Path(stage_dir) / MANIFEST
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
