"""Build the raw corpus: one jsonl per category + manifest.json + provenance.json.

Category kinds:
  builtin  real text from a pinned archive through a builder of cpt.corpus.builders (`builder: NAME`)
  jsonl    the user's own files (`paths: [file | directory | glob, ...]`), validated with cpt.artifacts.records;
           `on_bad_record: raise | skip` (skipped records are counted per reason in the manifest)
Each category: lang (zh|en), min_chars (shorter records are dropped and counted), max_chars (cap on the total
characters kept; null = no cap). Selection under the cap is deterministic: documents are ranked by a seeded hash
of their text and taken in that order while they fit; kept records are written in their source order.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from pathlib import Path
from typing import Iterable

import orjson

from cpt.artifacts.records import RecordStats, iter_records, write_jsonl
from cpt.core.errors import ConfigError
from cpt.core.schema import complete
from cpt.core.sources import archive_file, inputs_of
from cpt.corpus.archives import read_members, source_info
from cpt.corpus.builders import BUILDERS, MEMBER_PREFIXES, Doc

LANGS = ("zh", "en")


def seeded_hash(seed: int | str, text: str) -> int:
    """64-bit hash of text under a seed (stable across runs, platforms and Python versions)."""
    h = hashlib.blake2b(text.encode("utf-8"), digest_size=8, key=str(seed).encode("utf-8")[:64])
    return int.from_bytes(h.digest(), "big")


def normalize_section(section: dict | None) -> dict:
    """The corpus section completed with the schema's defaults (the embedded demo categories when it has none);
    each category's kind inferred (jsonl with paths, else builtin) and its paths made a list."""
    sec = complete("corpus", section)
    for name, c in sec["categories"].items():
        kind = c.setdefault("kind", "jsonl" if "paths" in c else "builtin")
        need = "builder" if kind == "builtin" else "paths"
        if need not in c:
            raise ConfigError(f"corpus.categories.{name}.{need}: required for kind {kind}")
        if isinstance(c.get("paths"), str):
            c["paths"] = [c["paths"]]
    return sec


def select(texts: list[str], max_chars: int | None, seed) -> tuple[list[int], int]:
    """Indices (ascending) of the texts kept under the character cap, and how many did not fit."""
    if max_chars is None:
        return list(range(len(texts))), 0
    order = sorted(range(len(texts)), key=lambda i: (seeded_hash(f"select:{seed}", texts[i]), i))
    kept, total = [], 0
    for i in order:
        n = len(texts[i])
        if total + n <= max_chars:
            kept.append(i)
            total += n
    return sorted(kept), len(texts) - len(kept)


def input_files(section: dict | None) -> list[str]:
    """What building the raw corpus reads: the archive of each builtin category's source and the user's jsonl
    files (for the rule's `input:`)."""
    sec = normalize_section(section)
    sources = [archive_file(BUILDERS[c["builder"]].source) for c in sec["categories"].values()
               if c["kind"] == "builtin"]
    return list(dict.fromkeys([*map(str, sources), *inputs_of(sec["categories"])]))


def _builtin_docs(cfg: dict) -> tuple[list[Doc], dict]:
    builder = BUILDERS[cfg["builder"]]
    members = cfg.get("members")
    if not members:
        members = list(builder.members)
        if cfg["builder"] in MEMBER_PREFIXES:
            from cpt.core.sources import list_members

            prefix, suffix = MEMBER_PREFIXES[cfg["builder"]]
            members = [m for m in list_members(builder.source, prefix) if m.endswith(suffix)]
    data = read_members(builder.source, list(members))
    ordered = {m: data[m] for m in members}  # config order, not archive order
    docs = list(builder.fn(ordered, cfg.get("options") or {}))
    origin = {"source": builder.source, **source_info(builder.source), "members": list(members),
              "builder": cfg["builder"]}
    return docs, origin


def _jsonl_docs(name: str, cfg: dict, stats: RecordStats) -> tuple[list[dict], dict]:
    recs = list(iter_records(cfg["paths"], schema="pretrain", on_error=cfg["on_bad_record"], stats=stats,
                             default_category=name))
    return recs, {"paths": list(cfg["paths"])}


def build_category(name: str, cfg: dict, seed) -> tuple[list[dict], dict]:
    """Records of one category and its manifest entry."""
    dropped: Counter = Counter()
    stats = RecordStats()
    if cfg["kind"] == "builtin":
        docs, origin = _builtin_docs(cfg)
        candidates = [{"source": "", "target": d.text, "category": name} for d in docs]
    else:
        candidates, origin = _jsonl_docs(name, cfg, stats)
        relabelled = 0
        for r in candidates:
            if r["category"] != name:
                relabelled += 1
                r["category"] = name
        origin["category_relabelled"] = relabelled
    found = len(candidates)
    kept = []
    for r in candidates:
        if not r["target"].strip():
            dropped["empty_target"] += 1
        elif len(r["target"]) < cfg["min_chars"]:
            dropped["below_min_chars"] += 1
        else:
            kept.append(r)
    idx, over = select([r["source"] + r["target"] for r in kept], cfg["max_chars"], seed)
    if over:
        dropped["over_max_chars"] += over
    records = [kept[i] for i in idx]
    entry = {
        "lang": cfg["lang"],
        "kind": cfg["kind"],
        "records": len(records),
        "chars": sum(len(r["source"]) + len(r["target"]) for r in records),
        "bytes": sum(len((r["source"] + r["target"]).encode("utf-8")) for r in records),
        "candidates": found,
        "dropped": dict(sorted(dropped.items())),
        "origin": origin,
    }
    if cfg["kind"] == "jsonl":
        entry["validation"] = stats.to_dict()
    assert found == len(records) + sum(dropped.values())
    return records, entry


def build_corpus(section: dict | None, out_dir: str | Path, progress: bool = True) -> dict:
    """Write <out_dir>/<category>.jsonl for every category, manifest.json and provenance.json. Returns the
    manifest."""
    from tqdm import tqdm

    from cpt.core.provenance import write_provenance

    t0 = time.time()
    sec = normalize_section(section)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest = {"seed": sec["seed"], "categories": {}}
    for name in tqdm(sorted(sec["categories"]), desc="corpus", disable=not progress, unit="category"):
        records, entry = build_category(name, sec["categories"][name], sec["seed"])
        write_jsonl(out / f"{name}.jsonl", records)
        manifest["categories"][name] = entry
    for lang in LANGS:
        cats = [c for c in manifest["categories"].values() if c["lang"] == lang]
        manifest[f"{lang}_chars"] = sum(c["chars"] for c in cats)
        manifest[f"{lang}_records"] = sum(c["records"] for c in cats)
    (out / "manifest.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
                                        + b"\n")
    inputs = {}
    for name, c in sec["categories"].items():
        if c["kind"] == "jsonl":
            for i, p in enumerate(c["paths"]):
                if not any(ch in p for ch in "*?["):
                    inputs[f"{name}[{i}]"] = p
    write_provenance(out, "corpus", sec, inputs=inputs, started=t0)
    return manifest


def iter_texts(paths: Iterable[str | Path]) -> Iterable[str]:
    """Targets of pretraining jsonl files (validated; raise on a bad record)."""
    for r in iter_records(list(paths)):
        yield r["target"]
