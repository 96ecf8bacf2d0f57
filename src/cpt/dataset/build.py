"""Pass 2 for one stage: select, bin, bucket, pack, shuffle, write buckets + manifest.json; `prepare_stage` runs
both passes (the CLI and the workflow script call it)."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from cpt.artifacts.dataset import MANIFEST, bucket_name, write_manifest
from cpt.core.disk import disk_full, free_space
from cpt.artifacts.records import expand_paths
from cpt.core.errors import ConfigError, DatasetError
from cpt.dataset.buckets import bucket_rows, rng_for
from cpt.dataset.manifest import skip_summary, stage_manifest
from cpt.dataset.packing import PieceStats, iter_packed, iter_unpacked, split_document
from cpt.dataset.selection import select_stage, write_selection
from cpt.dataset.settings import settings_of, stage_settings
from cpt.dataset.shards import fingerprint_of, take_docs, write_bucket
from cpt.dataset.tokenized import Corpus, read_tokenized, tokenize_corpus


def _bucket_pieces(corpus: Corpus, rows_by_cat: dict[str, np.ndarray], seed: int, purpose: tuple, window: int,
                   max_length: int, overlong: str, stats: PieceStats):
    """Pieces of one bucket's documents, categories interleaved in a seeded order, read window by window."""
    cats = sorted(rows_by_cat)
    cat_idx = np.concatenate([np.full(len(rows_by_cat[c]), i, dtype=np.int64) for i, c in enumerate(cats)]) \
        if cats else np.zeros(0, dtype=np.int64)
    rows = np.concatenate([rows_by_cat[c] for c in cats]) if cats else np.zeros(0, dtype=np.int64)
    order = rng_for(seed, "interleave", *purpose).permutation(len(rows))
    for start in range(0, len(order), window):
        sel = order[start:start + window]
        docs: dict[tuple[int, int], tuple] = {}
        for ci, c in enumerate(cats):
            mine = sel[cat_idx[sel] == ci]
            if len(mine) == 0:
                continue
            for pos, doc in zip(mine.tolist(), take_docs(corpus.table(c), rows[mine])):
                docs[pos] = doc
        for pos in sel.tolist():
            ids, labels = docs.pop(pos)
            yield from split_document(ids, labels, max_length, overlong, stats)


def build_stage(cache_dir: str | os.PathLike, dataset_cfg: dict, stage: str, out_dir: str | os.PathLike,
                progress: bool = True, tokenizer_path: str | None = None, prior: dict | None = None) -> dict:
    """Pass 2 for one stage: select, bin, bucket, pack, shuffle, write buckets + manifest.json."""
    t0 = time.time()
    st = stage_settings(dataset_cfg, stage)
    corpus = Corpus(cache_dir)
    if corpus.info["kind"] != st["kind"]:
        raise ConfigError(f"dataset.stages.{stage}.kind: {st['kind']} but the tokenized corpus in {cache_dir} "
                          f"is {corpus.info['kind']} data")
    if st["kind"] == "sft" and corpus.info.get("template") != st["template"]:
        raise ConfigError(f"dataset.stages.{stage}.template: {st['template']} but {cache_dir} was tokenized "
                          f"with {corpus.info.get('template')}")
    selections, report = select_stage(corpus, dataset_cfg, stage, prior=prior)
    buckets = bucket_rows(selections, st["num_bins"], st["seed"], stage)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)  # first: a rebuild killed from here on leaves no dataset to read
    for old in out.glob("bucket-*"):
        shutil.rmtree(old)
    stats = PieceStats()
    detail = []
    names = []
    key = fingerprint_of(corpus.info["files"], corpus.info["tokenizer_digest"], st)
    bar = tqdm(total=len(buckets), desc=f"buckets {stage}", unit="bucket", disable=not progress, file=sys.stderr)
    for i, rows_by_cat in enumerate(buckets):
        name = bucket_name(i)
        bstats = PieceStats()
        pieces = _bucket_pieces(corpus, rows_by_cat, st["seed"], (stage, i), st["pack_window"], st["max_length"],
                                st["overlong"], bstats)
        seqs = iter_packed(pieces, st["max_length"], st["pack_window"], st["pack_carry"]) if st["pack"] \
            else iter_unpacked(pieces)
        wstats = write_bucket(seqs, out / name, st["max_length"], st["seed"] if st["shuffle"] else None,
                              fingerprint_of(key, i), shuffle_key=(stage, i))
        stats.merge(bstats)
        if wstats["num_sequences"]:
            names.append(name)
        tok_per_cat = {c: int(corpus.lengths(c)[r].sum()) for c, r in sorted(rows_by_cat.items())}
        detail.append({
            "name": name, **wstats,
            "padding_fraction": round(wstats["padding_tokens"] / max(1, wstats["num_sequences"] * st["max_length"]), 6),
            "documents_per_category": {c: int(len(r)) for c, r in sorted(rows_by_cat.items())},
            "tokens_per_category": tok_per_cat,
        })
        bar.update(1)
    bar.close()
    manifest = stage_manifest(st, corpus, selections, report, detail, names, stats,
                              tokenizer_path or corpus.info["tokenizer"], t0)
    if manifest["tokens"]["lost_by_packing"] != 0:
        raise DatasetError(f"{out}: internal error: packing lost {manifest['tokens']['lost_by_packing']} tokens")
    if manifest["num_sequences"] == 0:
        # training would only fail later on an empty dataset: stop here, with the counts of where everything went
        raise DatasetError(f"dataset stage {stage!r} ({out}): no sequence left, every document was skipped or "
                           f"none was selected ({skip_summary(manifest)}); check the input records "
                           f"(`cpt validate-records`), dataset.stages.{stage} and max_length")
    write_selection(out, selections, corpus)
    write_manifest(out, manifest)
    return manifest



def prepare_stage(inputs: Sequence[str | os.PathLike], tokenizer_dir: str | os.PathLike, out_dir: str | os.PathLike,
                  dataset_cfg: dict, stage: str, cache_dir: str | os.PathLike | None = None,
                  progress: bool = True, prior: dict | None = None) -> dict:
    """Both passes for one stage (the CLI and the workflow script call this).

    `dataset_cfg`: the `dataset:` section (the workflow gives cpt.core.config.dataset_config: only this stage in
    `stages`); `prior`: {earlier stage: its output dir} for the stages named in replay.from."""
    from cpt.core.provenance import write_provenance

    t0 = time.time()
    cfg = settings_of(dataset_cfg)
    st = stage_settings(cfg, stage)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp_cache = cache_dir is None
    cache = Path(cache_dir) if cache_dir else Path(tempfile.mkdtemp(prefix=".tokenized-", dir=out))
    try:
        if not _cache_valid(cache, inputs, tokenizer_dir, st, cfg):
            tokenize_corpus(inputs, tokenizer_dir, cache, cfg, stage, progress=progress)
        manifest = build_stage(cache, cfg, stage, out, progress=progress, tokenizer_path=str(tokenizer_dir),
                               prior=prior)
    except Exception as exc:
        if not disk_full(exc, out):
            raise
        (out / MANIFEST).unlink(missing_ok=True)
        for partial in out.glob("bucket-*"):  # give the space back; without a manifest nothing reads them
            shutil.rmtree(partial, ignore_errors=True)
        raise DatasetError(f"{out}: no space left on device (ENOSPC) while writing dataset stage {stage!r} "
                           f"({free_space(out)}); the partial buckets were removed. Free space (or write the "
                           f"results elsewhere) and rerun") from None
    finally:
        if tmp_cache:
            shutil.rmtree(cache, ignore_errors=True)
    write_provenance(out, f"dataset/{stage}", dataset_cfg,
                     inputs={"tokenizer": tokenizer_dir, **{f"input{i}": p for i, p in enumerate(inputs)}},
                     started=t0, extra={"num_sequences": manifest["num_sequences"],
                                        "num_tokens": manifest["num_tokens"]})
    return manifest


def _cache_valid(cache: Path, inputs, tokenizer_dir, st: dict, cfg: dict) -> bool:
    from cpt.core.provenance import describe_input

    try:
        info = read_tokenized(cache)
    except DatasetError:
        return False
    files = expand_paths(inputs)
    return (info["kind"] == st["kind"] and info.get("template") == (st["template"] if st["kind"] == "sft" else None)
            and [f["path"] for f in info["files"]] == [str(f) for f in files]
            and all(describe_input(f) == {k: v for k, v in g.items() if k != "path"}
                    for f, g in zip(files, info["files"]))
            and info["tokenizer_digest"] == describe_input(tokenizer_dir)
            # a cache that skipped bad records must not stand in for on_bad_record: raise (and older caches
            # without cpt.artifacts.records' counts are rebuilt)
            and info.get("on_bad_record") == cfg["on_bad_record"] and "validation" in info["records"])

