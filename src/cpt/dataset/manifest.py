"""What a stage's manifest.json records: buckets in training order, sequences and tokens, what was skipped and why
(per reason), the selection report, the settings and the inputs."""

from __future__ import annotations

import time


def _identity(tokenizer: str) -> dict | None:
    from cpt.artifacts.identity import has_tokenizer, tokenizer_identity

    return tokenizer_identity(tokenizer) if tokenizer and has_tokenizer(tokenizer) else None


def skip_summary(manifest: dict) -> str:
    """The counts that say where a stage's documents went (for the all-skipped error)."""
    docs = manifest["documents"]
    parts = [f"{docs['in_corpus']:,} documents in the tokenized corpus", f"{docs['selected']:,} selected"]
    for label, counts in (("skipped", docs["skipped"]), ("bad records skipped", docs["records_skipped_at_tokenization"]),
                          ("skipped at tokenization", docs["skipped_at_tokenization"])):
        if counts:
            parts.append(f"{label}: " + ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items())))
    tokens = manifest["tokens"]
    if tokens["skipped"]:
        parts.append("tokens skipped: " + ", ".join(f"{k} {v:,}" for k, v in sorted(tokens["skipped"].items())))
    return "; ".join(parts)


def stage_manifest(st: dict, corpus, selections: dict, report: dict, detail: list[dict], names: list[str],
                   stats, tokenizer: str, t0: float) -> dict:
    """The manifest of one built stage (cpt.dataset.build.build_stage): `st` its settings, `corpus` the tokenized
    cache, `detail` one entry per bucket, `names` the non-empty buckets, `stats` the merged PieceStats."""
    stage = st["stage"]
    num_seq = sum(d["num_sequences"] for d in detail)
    num_tok = sum(d["num_tokens"] for d in detail)
    docs_selected = sum(len(s.rows) for s in selections.values())
    manifest = {
        "stage": stage,
        "kind": st["kind"],
        "buckets": names,
        "empty_buckets": [d["name"] for d in detail if d["num_sequences"] == 0],
        "num_sequences": num_seq,
        "num_tokens": num_tok,
        "num_target_tokens": sum(d["num_target_tokens"] for d in detail),
        "max_length": st["max_length"],
        "tokenizer": tokenizer,
        "tokenizer_digest": corpus.info["tokenizer_digest"],
        # the vocabulary the ids belong to (cpt.artifacts.identity; `cpt train` refuses a model with another one)
        "tokenizer_identity": corpus.info.get("tokenizer_identity") or _identity(tokenizer),
        "vocab_size": corpus.info["vocab_size"],
        "columns": {"input_ids": "list<int32>", "labels": "list<int32> (-100: no loss)",
                    "doc_lengths": "list<int32> (sum = len(input_ids))"},
        "padding_fraction": round(sum(d["padding_tokens"] for d in detail) / max(1, num_seq * st["max_length"]), 6),
        "settings": st,
        "seeds": {"seed": st["seed"], "streams": ["select", "replay", "bins", "interleave", "shuffle"]},
        "documents": {
            "in_corpus": corpus.info["records"]["documents"],
            "selected": docs_selected,
            "out": stats.documents - sum(stats.skipped_documents.values()),
            "skipped": dict(sorted(stats.skipped_documents.items())),
            # bad records, per cpt.artifacts.records reason (dataset.on_bad_record: skip)
            "records_skipped_at_tokenization": dict(corpus.info["records"]["validation"]["skipped"]),
            # valid records the dataset could not use (e.g. SFT: not even the first turn fits max_length)
            "skipped_at_tokenization": {k.split(":", 1)[1]: v for k, v in corpus.info["records"].items()
                                        if k.startswith("skipped:")},
            "split": stats.split_documents,
        },
        "tokens": {
            "selected": stats.tokens_in, "out": stats.tokens_out, "target_selected": stats.target_tokens_in,
            "target_out": stats.target_tokens_out,
            "skipped": dict(sorted(stats.skipped_tokens.items())),
            "skipped_target": dict(sorted(stats.skipped_target_tokens.items())),
            "lost_by_packing": stats.tokens_out - num_tok,
        },
        "selection": report,
        "tokenization": {k: v for k, v in corpus.info["records"].items()
                         if not k.startswith("skipped:") and k != "validation"},
        "record_validation": corpus.info["records"]["validation"],
        "inputs": corpus.info["files"],
        "bucket_detail": detail,
        "seconds": round(time.time() - t0, 3),
    }
    return manifest
