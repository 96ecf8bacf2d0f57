"""Deterministic held-out split per category.

A record goes to held-out when a seeded 64-bit hash of its text (source + target), read as a fraction of 2**64,
is below `heldout_fraction`; when that gives more than `max_heldout` records, only the `max_heldout` with the
smallest hashes are held out. The decision depends on the record's own text only, so it is the same on every run
and stable when records are added (a record never moves from train to held-out; at most, with the max cap, one
held-out record with a larger hash moves back to train). Identical texts always land on the same side, so an exact
duplicate cannot leak from train into held-out.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import orjson

from cpt.artifacts.corpus import category_files
from cpt.artifacts.records import RecordStats, iter_records, write_jsonl
from cpt.core.errors import ConfigError
from cpt.core.schema import complete
from cpt.corpus.build import seeded_hash

TWO64 = float(1 << 64)


def normalize_split(section: dict | None) -> dict:
    """corpus.split completed with the schema's defaults."""
    sec = complete("corpus.split", section)
    if sec["max_heldout"] is not None and sec["min_heldout"] > sec["max_heldout"]:
        raise ConfigError(f"corpus.split.min_heldout: {sec['min_heldout']} is above max_heldout {sec['max_heldout']}")
    return sec


def heldout_mask(texts: list[str], fraction: float, max_heldout: int | None, seed, min_heldout: int = 0) -> list[bool]:
    """True for the held-out texts. min_heldout (at most len(texts) - 1) lifts the fraction for small categories so
    every category can be evaluated; the extra ones are again the smallest hashes."""
    keys = [seeded_hash(f"split:{seed}", t) for t in texts]
    limit = fraction * TWO64
    cand = [i for i, k in enumerate(keys) if k < limit]
    floor = min(min_heldout, len(texts) - 1)
    if len(cand) < floor:
        ranked = sorted(range(len(texts)), key=lambda i: keys[i])
        cut = keys[ranked[floor - 1]]
        cand = [i for i in ranked if keys[i] <= cut]
    if max_heldout is not None and len(cand) > max_heldout:
        # hash ties (identical texts) stay together: cut at a key boundary
        cand.sort(key=lambda i: keys[i])
        cut = keys[cand[max_heldout]]
        cand = [i for i in cand if keys[i] < cut]
    mask = [False] * len(texts)
    for i in cand:
        mask[i] = True
    return mask


def _input_langs(in_dir: Path) -> dict[str, str]:
    m = in_dir / "manifest.json"
    if m.is_file():
        cats = json.loads(m.read_text(encoding="utf-8")).get("categories", {})
        return {n: c["lang"] for n, c in cats.items() if isinstance(c, dict) and "lang" in c}
    return {}


def split_corpus(in_dir: str | Path, out_dir: str | Path | None, section: dict | None = None,
                 langs: dict[str, str] | None = None, progress: bool = True,
                 train_dir: str | Path | None = None, heldout_dir: str | Path | None = None) -> dict:
    """Read <in_dir>/<category>.jsonl (raw or cleaned), write <out_dir>/train/<category>.jsonl and
    <out_dir>/heldout/<category>.jsonl (or train_dir / heldout_dir when given), each folder with manifest.json and
    provenance.json. Returns the manifest."""
    from tqdm import tqdm

    from cpt.core.provenance import write_provenance

    t0 = time.time()
    sec = normalize_split(section)
    in_dir = Path(in_dir)
    if out_dir is None and (train_dir is None or heldout_dir is None):
        raise ValueError("give out_dir, or both train_dir and heldout_dir")
    dirs = {"train": Path(train_dir) if train_dir else Path(out_dir) / "train",
            "heldout": Path(heldout_dir) if heldout_dir else Path(out_dir) / "heldout"}
    files = list(category_files(in_dir).values())
    if not files:
        raise ConfigError(f"{in_dir}: no <category>.jsonl file to split (expected the corpus raw/ or a cleaned dir)")
    langs = {**_input_langs(in_dir), **(langs or {})}
    manifest = {"input": str(in_dir), "heldout_fraction": sec["heldout_fraction"], "max_heldout": sec["max_heldout"],
                "min_heldout": sec["min_heldout"],
                "seed": sec["seed"], "categories": {}}
    for f in tqdm(files, desc="split", disable=not progress, unit="category"):
        cat = f.stem
        stats = RecordStats()
        recs = list(iter_records(f, on_error=sec["on_bad_record"], stats=stats))
        mask = heldout_mask([r["source"] + "\x00" + r["target"] for r in recs], sec["heldout_fraction"],
                            sec["max_heldout"], sec["seed"], sec["min_heldout"])
        train = [r for r, h in zip(recs, mask) if not h]
        held = [r for r, h in zip(recs, mask) if h]
        write_jsonl(dirs["train"] / f"{cat}.jsonl", train)
        write_jsonl(dirs["heldout"] / f"{cat}.jsonl", held)
        manifest["categories"][cat] = {
            "lang": langs.get(cat),
            "records": len(recs),
            "train_records": len(train),
            "heldout_records": len(held),
            "train_chars": sum(len(r["source"]) + len(r["target"]) for r in train),
            "heldout_chars": sum(len(r["source"]) + len(r["target"]) for r in held),
            "validation": stats.to_dict(),
        }
    blob = orjson.dumps(manifest, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    for part, d in dirs.items():
        d.mkdir(parents=True, exist_ok=True)
        (d / "manifest.json").write_bytes(blob)
        write_provenance(d, "corpus_split", sec, inputs={"corpus": in_dir}, started=t0, extra={"part": part})
    return manifest
