"""The report's Data section: per-category numbers from the manifests of one experiment.

Three tables, each a (header, rows) pair of strings:
  corpus_rows   per category: language, raw records and characters (corpus/raw/manifest.json), records and
                characters kept by cleaning (clean/report.json), train / held-out records and characters
                (corpus/train/manifest.json)
  stage_rows    per training stage and category: documents and tokens the stage's dataset selected (its own
                plus replayed ones, dataset/<stage>/manifest.json `selection`) and the category's share of the
                stage's tokens; one total row per stage
  dataset_rows  per stage: sequences, tokens, max_length, buckets, padding, documents skipped
"""

from __future__ import annotations

from typing import Mapping


def _n(x) -> str:
    return "-" if x is None else f"{x:,}"


def _pct(num, den) -> str:
    return "-" if not den else f"{100.0 * num / den:.1f}%"


def corpus_rows(manifests: Mapping[str, Mapping]) -> tuple[list[str], list[list[str]]]:
    header = ["category", "lang", "raw records", "raw chars", "kept by clean", "chars kept", "train records",
              "train chars", "held-out records", "held-out chars"]
    raw = (manifests.get("corpus/raw") or {}).get("categories") or {}
    clean = (manifests.get("clean") or {}).get("categories") or {}
    split = (manifests.get("corpus/train") or manifests.get("corpus/heldout") or {}).get("categories") or {}
    rows = []
    for c in sorted(set(raw) | set(clean) | set(split)):
        r, k, s = raw.get(c) or {}, clean.get(c) or {}, split.get(c) or {}
        lang = r.get("lang") or s.get("lang") or k.get("language") or "-"
        rows.append([c, lang, _n(r.get("records")), _n(r.get("chars")), _n(k.get("kept")), _n(k.get("chars_kept")),
                     _n(s.get("train_records")), _n(s.get("train_chars")), _n(s.get("heldout_records")),
                     _n(s.get("heldout_chars"))])
    if len(rows) > 1:
        cols = [[r[i] for r in rows] for i in range(2, len(header))]
        rows.append(["total", ""] + [_n(sum(int(v.replace(",", "")) for v in col)) if "-" not in col else "-"
                                     for col in cols])
    return header, rows


def stage_categories(manifest: Mapping) -> dict[str, dict]:
    """{category: {documents, tokens, replay_tokens}} a stage's dataset selected (own + replayed documents)."""
    cats = ((manifest.get("selection") or {}).get("categories")) or {}
    out = {}
    for c, v in sorted(cats.items()):
        out[c] = {"documents": int(v.get("documents_selected", 0)) + int(v.get("replay_documents", 0)),
                  "tokens": int(v.get("tokens_selected", 0)) + int(v.get("replay_tokens", 0)),
                  "replay_tokens": int(v.get("replay_tokens", 0))}
    return out


def stage_rows(manifests: Mapping[str, Mapping], stages) -> tuple[list[str], list[list[str]]]:
    header = ["stage", "category", "documents", "tokens", "of which replayed", "share of stage tokens"]
    rows = []
    for s in stages:
        m = manifests.get(f"dataset/{s}")
        if not m:
            continue
        cats = stage_categories(m)
        total = sum(v["tokens"] for v in cats.values())
        for c, v in cats.items():
            rows.append([s, c, _n(v["documents"]), _n(v["tokens"]), _n(v["replay_tokens"]), _pct(v["tokens"], total)])
        rows.append([s, "total", _n(sum(v["documents"] for v in cats.values())), _n(total),
                     _n(sum(v["replay_tokens"] for v in cats.values())), _pct(total, total)])
    return header, rows


def dataset_rows(manifests: Mapping[str, Mapping], stages) -> tuple[list[str], list[list[str]]]:
    header = ["stage", "sequences", "tokens", "max_length", "buckets", "padding", "documents skipped"]
    rows = []
    for s in stages:
        m = manifests.get(f"dataset/{s}")
        if not m:
            continue
        skipped = (m.get("documents") or {}).get("skipped") or {}
        pad = m.get("padding_fraction")
        rows.append([s, _n(m.get("num_sequences")), _n(m.get("num_tokens")), _n(m.get("max_length")),
                     _n(len(m.get("buckets") or [])), "-" if pad is None else f"{100.0 * pad:.2f}%",
                     ", ".join(f"{k} {v:,}" for k, v in sorted(skipped.items())) or "0"])
    return header, rows
