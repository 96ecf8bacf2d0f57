"""Dataset preparation: jsonl -> tokenized cache -> per-stage selection -> ordered buckets of packed sequences.

Two passes, memory flat in corpus size:
  1. `tokenize_corpus`: stream every jsonl file in blocks of lines, parse + tokenize them (a process pool, or the
     tokenizer's own threads), append to one memory-mapped arrow file per category (`_tokenized/`).
  2. `build_stage`: choose the stage's documents (config: categories with token caps / mixing weights, a replay
     share drawn from earlier stages), split every category into N bins of near-equal tokens, bucket i = bin i of
     every category; per bucket: split overlong documents, best-fit pack, seeded shuffle, save_to_disk.
The stage directory gets bucket-00000/ ... and manifest.json (+ provenance.json).

Stage-data config (the `dataset:` section; see `DEFAULTS` and `stage_settings`):

    dataset:
      max_length: 4096           # tokens per sequence
      num_bins: 10               # bins per category = buckets per stage
      seed: 42
      overlong: split            # split | truncate | drop
      bad_records: error         # error | skip: cpt.records' on_error raise | skip (skips counted per reason)
      stages:
        injection:
          kind: pretrain          # pretrain | sft
          categories:             # which categories feed the stage (default: all)
            zh_news: {max_tokens: 2000000}   # cap (whole documents, seeded order)
            en_bible: {weight: 1.0}          # mixing weights: all categories or none
          replay: {from: [base], share: 0.2}  # 20% of the stage's tokens replayed from base's documents
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import click
import numpy as np
from tqdm import tqdm

from cpt.buckets import Selection, bucket_rows, rng_for, take_tokens
from cpt.cli import parse_pairs
from cpt.errors import ConfigError, DatasetError, RecordError
from cpt.packing import (
    BAD_RECORD_MODES, OVERLONG_MODES, PieceStats, add_bad_records_hint, iter_packed, iter_unpacked, on_error_of,
    split_document, tokenize_pretrain_lines,
)
from cpt.records import RecordStats, empty_file_error
from cpt.shards import (
    TokenizedDocs, TokenizedWriter, bucket_name, fingerprint_of, open_tokenized, take_docs, write_bucket,
    write_manifest,
)

DEFAULTS = {
    "max_length": 4096,
    "num_bins": 10,
    "seed": 42,
    "overlong": "split",
    "bad_records": "error",
    "num_workers": 0,            # 0: the tokenizer's own threads in this process; N: N worker processes
    "block_lines": 2000,
    "pack_window": 8192,
    "pack_carry": 64,
    "sft": {"template": "llama2"},
}
TOKENIZED_INFO = "tokenized.json"


# =========================================================================================== pass 1: tokenize
def _jsonl_files(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(p.rglob("*.jsonl"))
            if not found:
                raise DatasetError(f"{p}: no *.jsonl files in this input directory")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise DatasetError(f"{p}: input file or directory does not exist")
    return files


def _iter_blocks(files: list[Path], block_lines: int, progress: bool):
    """(file_index, path, first_line, [raw lines]) blocks, with a byte progress bar."""
    total = sum(f.stat().st_size for f in files)
    bar = tqdm(total=total, unit="B", unit_scale=True, desc="tokenize", disable=not progress, file=sys.stderr)
    for fi, path in enumerate(files):
        with open(path, "rb") as f:
            block, first = [], 1
            for no, line in enumerate(f, start=1):
                block.append(line)
                if len(block) >= block_lines:
                    bar.update(sum(len(x) for x in block))
                    yield fi, str(path), first, block
                    block, first = [], no + 1
            if block:
                bar.update(sum(len(x) for x in block))
                yield fi, str(path), first, block
    bar.close()


_WORKER: dict = {}


def _load_tokenizer(tokenizer_dir):
    from cpt.packing import load_tokenizer

    return load_tokenizer(tokenizer_dir)


def _init_worker(settings: dict):
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _WORKER.clear()
    _WORKER.update(_make_state(settings))


def _make_state(settings: dict) -> dict:
    tok = _load_tokenizer(settings["tokenizer_dir"])
    state = {"settings": settings, "backend": tok.backend, "bos": tok.bos_token_id, "eos": tok.eos_token_id}
    if settings["kind"] == "sft":
        from cpt.sft import SFTEncoder

        state["sft"] = SFTEncoder(tok, settings["template"], settings["max_length"])
    return state


def _process_block_in_worker(block):
    """_process_block in a pool worker. RecordError(path, line, reason, message) cannot be unpickled by the parent
    (its args are the formatted text), which would hang the pool: send its parts back instead."""
    try:
        return _process_block(block)
    except RecordError as err:
        where = f"{err.path}:{err.line}" if err.line is not None else err.path
        return ("RecordError", err.path, err.line, err.reason, str(err)[len(where) + 2:],
                list(getattr(err, "__notes__", [])))


def _reraise_record_error(result):
    _, path, line, reason, message, notes = result
    err = RecordError(path, line, reason, message)
    for n in notes:
        err.add_note(n)
    raise err


def _process_block(block, state=None):
    state = state or _WORKER
    s = state["settings"]
    fi, path, first, lines = block
    if s["kind"] == "pretrain":
        b = tokenize_pretrain_lines(state["backend"], state["bos"], state["eos"], lines, path, first,
                                    s["bad_records"])
        return fi, b.categories, b.ids, b.offsets, b.n_masked, None, b.lines, {}, b.records
    from cpt.packing import _flatten
    from cpt.sft import tokenize_sft_lines

    default_cat = Path(path).stem
    records = RecordStats()
    cats, ids, labels, line_nos, stats = tokenize_sft_lines(state["sft"], lines, path, first, default_cat,
                                                            s["bad_records"], records)
    flat, offsets = _flatten(ids)
    lab, _ = _flatten(labels)
    return fi, cats, flat, offsets, None, lab, np.asarray(line_nos, dtype=np.int64), stats, records


def tokenize_corpus(inputs: Sequence[str | os.PathLike], tokenizer_dir: str | os.PathLike,
                    out_dir: str | os.PathLike, kind: str = "pretrain", num_workers: int = 0,
                    block_lines: int = 2000, bad_records: str = "error", template: str = "llama2",
                    max_length: int = 4096, progress: bool = True) -> dict:
    """Pass 1. Writes out_dir/cat-NNNNN.arrow per category + tokenized.json; returns that info."""
    from cpt.provenance import describe_input

    if kind not in ("pretrain", "sft"):
        raise ConfigError(f"dataset.stages.*.kind: {kind!r} is not pretrain or sft")
    on_error = on_error_of(bad_records)
    files = _jsonl_files(inputs)
    out = Path(out_dir)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    t0 = time.time()
    tok = _load_tokenizer(tokenizer_dir)
    tok_dir = Path(tokenizer_dir)
    fast_dir = None
    if num_workers > 1 and not (tok_dir / "tokenizer.json").is_file():
        # convert the slow SentencePiece model once, not in every worker
        fast_dir = Path(tempfile.mkdtemp(prefix="fast-tokenizer-", dir=out))
        tok.backend.save(str(fast_dir / "tokenizer.json"))
        (fast_dir / "special_tokens_map.json").write_text(json.dumps({
            "bos_token": tok.backend.id_to_token(tok.bos_token_id),
            "eos_token": tok.backend.id_to_token(tok.eos_token_id),
            "unk_token": tok.unk_token}))
    settings = {"tokenizer_dir": str(fast_dir or tok_dir), "kind": kind, "bad_records": bad_records,
                "template": template, "max_length": int(max_length)}
    writers: dict[str, TokenizedWriter] = {}
    counts: dict[str, int] = {}
    validation = RecordStats(files=len(files))
    seen_in_file = [0] * len(files)   # records + bad lines per file: none = cpt.records' empty_file
    blocks = _iter_blocks(files, block_lines, progress)
    pool = None
    try:
        if num_workers > 1:
            pool = mp.get_context("spawn").Pool(num_workers, initializer=_init_worker, initargs=(settings,))
            results = pool.imap(_process_block_in_worker, blocks, chunksize=1)
        else:
            state = _make_state(settings)
            results = (_process_block(b, state) for b in blocks)
        for result in results:
            if result[0] == "RecordError":
                _reraise_record_error(result)
            fi, cats, flat, offsets, n_masked, labels, line_nos, stats, records = result
            for k, v in stats.items():
                counts[k] = counts.get(k, 0) + v
            validation.merge(records)
            seen_in_file[fi] += records.records + records.num_skipped
            if not cats:
                continue
            cats_arr = np.asarray(cats, dtype=object)
            for cat in sorted(set(cats)):
                idx = np.nonzero(cats_arr == cat)[0]
                if cat not in writers:
                    writers[cat] = TokenizedWriter(out / f"cat-{len(writers):05d}.arrow", kind)
                starts, ends = offsets[idx], offsets[idx + 1]
                lens = ends - starts
                sub_off = np.zeros(len(idx) + 1, dtype=np.int64)
                np.cumsum(lens, out=sub_off[1:])
                take = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends)]) if len(idx) else []
                writers[cat].write(flat[take], sub_off, line_nos[idx], fi,
                                   n_masked=None if n_masked is None else n_masked[idx],
                                   labels=None if labels is None else labels[take])
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
        for w in writers.values():
            w.close()
        if fast_dir is not None:
            shutil.rmtree(fast_dir, ignore_errors=True)
    for f, seen in zip(files, seen_in_file):
        if not seen:
            err = empty_file_error(f)
            if on_error == "raise":
                raise add_bad_records_hint(err)
            validation.add_error(err)
    info = {
        "kind": kind,
        "tokenizer": str(tokenizer_dir),
        "tokenizer_digest": describe_input(tokenizer_dir),
        "vocab_size": len(tok),
        "bos_id": tok.bos_token_id,
        "eos_id": tok.eos_token_id,
        "template": template if kind == "sft" else None,
        "bad_records": bad_records,
        "files": [{"path": str(f), **describe_input(f)} for f in files],
        "categories": {cat: {"file": w.path.name, "documents": w.rows, "tokens": w.tokens}
                       for cat, w in sorted(writers.items())},
        # validation: cpt.records' counts (lines, blank lines, bad records per cpt.records reason, examples);
        # the other keys count what the dataset does to valid records (e.g. SFT turns dropped to fit)
        "records": {"documents": sum(w.rows for w in writers.values()), "validation": validation.to_dict(),
                    **dict(sorted(counts.items()))},
        "seconds": round(time.time() - t0, 3),
    }
    (out / TOKENIZED_INFO).write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return info


def read_tokenized(cache_dir: str | os.PathLike) -> dict:
    path = Path(cache_dir) / TOKENIZED_INFO
    if not path.is_file():
        raise DatasetError(f"{path}: missing; run tokenize_corpus first")
    return json.loads(path.read_text(encoding="utf-8"))


# =========================================================================================== stage settings
def settings_of(dataset_cfg: dict | None) -> dict:
    cfg = {**DEFAULTS, **(dataset_cfg or {})}
    cfg["sft"] = {**DEFAULTS["sft"], **((dataset_cfg or {}).get("sft") or {})}
    if cfg["overlong"] not in OVERLONG_MODES:
        raise ConfigError(f"dataset.overlong: {cfg['overlong']!r} is not one of {OVERLONG_MODES}")
    on_error_of(cfg["bad_records"])   # ConfigError naming dataset.bad_records
    for key in ("max_length", "num_bins"):
        if not isinstance(cfg[key], int) or cfg[key] < 1:
            raise ConfigError(f"dataset.{key}: must be a positive integer, got {cfg[key]!r}")
    return cfg


def stage_settings(dataset_cfg: dict, stage: str) -> dict:
    """The effective settings of one stage (stage keys override dataset-wide ones)."""
    cfg = settings_of(dataset_cfg)
    stages = cfg.get("stages") or {}
    if stage not in stages:
        raise ConfigError(f"dataset.stages.{stage}: no such stage; defined: {sorted(stages) or 'none'}")
    st = dict(stages[stage] or {})
    kind = st.get("kind", "pretrain")
    if kind not in ("pretrain", "sft"):
        raise ConfigError(f"dataset.stages.{stage}.kind: {kind!r} is not pretrain or sft")
    out = {
        "stage": stage,
        "kind": kind,
        "max_length": int(st.get("max_length", cfg["max_length"])),
        "num_bins": int(st.get("num_bins", cfg["num_bins"] if kind == "pretrain" else 1)),
        "seed": int(st.get("seed", cfg["seed"])),
        "overlong": st.get("overlong", cfg["overlong"] if kind == "pretrain" else "drop"),
        "pack": bool(st.get("pack", kind == "pretrain")),
        "shuffle": bool(st.get("shuffle", True)),
        "categories": st.get("categories"),
        "replay": st.get("replay"),
        "pack_window": int(cfg["pack_window"]),
        "pack_carry": int(cfg["pack_carry"]),
        "template": (st.get("template") or cfg["sft"]["template"]) if kind == "sft" else None,
    }
    if out["overlong"] not in OVERLONG_MODES:
        raise ConfigError(f"dataset.stages.{stage}.overlong: {out['overlong']!r} is not one of {OVERLONG_MODES}")
    cats = out["categories"]
    if cats is not None:
        if isinstance(cats, list):
            cats = {c: {} for c in cats}
        if not isinstance(cats, dict):
            raise ConfigError(f"dataset.stages.{stage}.categories: a mapping category -> {{max_tokens?, weight?}}")
        cats = {c: dict(v or {}) for c, v in cats.items()}
        for c, v in cats.items():
            bad = set(v) - {"max_tokens", "weight"}
            if bad:
                raise ConfigError(f"dataset.stages.{stage}.categories.{c}: unknown keys {sorted(bad)} "
                                  f"(allowed: max_tokens, weight)")
            if "max_tokens" in v and (not isinstance(v["max_tokens"], int) or v["max_tokens"] < 0):
                raise ConfigError(f"dataset.stages.{stage}.categories.{c}.max_tokens: a non-negative integer")
            if "weight" in v and (not isinstance(v["weight"], (int, float)) or v["weight"] <= 0):
                raise ConfigError(f"dataset.stages.{stage}.categories.{c}.weight: a positive number")
        weighted = [c for c, v in cats.items() if "weight" in v]
        if weighted and len(weighted) != len(cats):
            raise ConfigError(f"dataset.stages.{stage}.categories: give a weight to every category or to none "
                              f"(weighted: {weighted})")
        out["categories"] = cats
    rep = out["replay"]
    if rep is not None:
        if not isinstance(rep, dict) or "from" not in rep or "share" not in rep:
            raise ConfigError(f"dataset.stages.{stage}.replay: expected {{from: [stage, ...], share: 0..1}}")
        frm = [rep["from"]] if isinstance(rep["from"], str) else list(rep["from"])
        share = rep["share"]
        if not isinstance(share, (int, float)) or not 0 <= share < 1:
            raise ConfigError(f"dataset.stages.{stage}.replay.share: a number in [0, 1), got {share!r}")
        for f in frm:
            if f not in stages:
                raise ConfigError(f"dataset.stages.{stage}.replay.from: {f!r} is not a stage")
            if f == stage:
                raise ConfigError(f"dataset.stages.{stage}.replay.from: a stage cannot replay itself")
        out["replay"] = {"from": frm, "share": float(share)}
    return out


# =========================================================================================== selection
class Corpus:
    """The tokenized cache: per-category memory-mapped tables and lengths."""

    def __init__(self, cache_dir: str | os.PathLike):
        self.dir = Path(cache_dir)
        self.info = read_tokenized(cache_dir)
        self._tables: dict = {}
        self._lengths: dict = {}

    @property
    def categories(self) -> list[str]:
        return sorted(self.info["categories"])

    def table(self, cat: str) -> TokenizedDocs:
        if cat not in self._tables:
            self._tables[cat] = TokenizedDocs(open_tokenized(self.dir / self.info["categories"][cat]["file"]))
        return self._tables[cat]

    def lengths(self, cat: str) -> np.ndarray:
        if cat not in self._lengths:
            self._lengths[cat] = self.table(cat).lengths()
        return self._lengths[cat]


SELECTION_FILE = "selection.arrow"


def write_selection(stage_dir: Path, selections: dict, corpus: "Corpus") -> Path:
    """The stage's documents (category, row) so a later replay stage draws exactly what this stage trained on."""
    import pyarrow as pa

    cats, rows = [], []
    for c in sorted(selections):
        cats.extend([c] * len(selections[c].rows))
        rows.append(selections[c].rows)
    meta = {"documents_per_category": {c: v["documents"] for c, v in corpus.info["categories"].items()}}
    table = pa.table({"category": pa.array(cats, type=pa.string()),
                      "row": pa.array(np.concatenate(rows) if rows else np.zeros(0, np.int64), type=pa.int64())})
    table = table.replace_schema_metadata({"cpt": json.dumps(meta, sort_keys=True)})
    path = Path(stage_dir) / SELECTION_FILE
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
        w.write_table(table)
    return path


def read_selection(stage_dir: str | os.PathLike, corpus: "Corpus", stage: str) -> dict[str, np.ndarray]:
    import pyarrow as pa

    path = Path(stage_dir) / SELECTION_FILE
    if not path.is_file():
        raise DatasetError(f"{path}: missing; build the dataset of stage {stage!r} before the stages that replay it")
    with pa.memory_map(str(path), "r") as src:
        table = pa.ipc.open_file(src).read_all()
    meta = json.loads(table.schema.metadata[b"cpt"])
    out: dict[str, list] = {}
    for c, r in zip(table.column("category").to_pylist(), table.column("row").to_numpy()):
        out.setdefault(c, []).append(int(r))
    for c in out:
        have = corpus.info["categories"].get(c, {}).get("documents")
        if have != meta["documents_per_category"].get(c):
            raise DatasetError(f"{path}: stage {stage!r} was built from a corpus with "
                               f"{meta['documents_per_category'].get(c)} documents of {c!r}, this one has {have}; "
                               f"rebuild {stage!r} from the same corpus")
    return {c: np.asarray(v, dtype=np.int64) for c, v in out.items()}


def select_stage(corpus: Corpus, dataset_cfg: dict, stage: str, _seen: tuple = (),
                 prior: dict | None = None) -> tuple[dict, dict]:
    """({category: Selection}, report) for one stage: its own documents plus replayed ones. Deterministic.

    prior: {earlier stage: its output dir}; replay reads what that stage really selected (selection.arrow);
    without it, the earlier stage's selection is recomputed from the config (same result when it used the same
    tokenizer).
    """
    if stage in _seen:
        raise ConfigError(f"dataset.stages.{stage}.replay: replay cycle {' -> '.join((*_seen, stage))}")
    st = stage_settings(dataset_cfg, stage)
    cats = st["categories"]
    if cats is None:
        cats = {c: {} for c in corpus.categories}
    missing = [c for c in cats if c not in corpus.info["categories"]]
    if missing:
        raise ConfigError(f"dataset.stages.{stage}.categories: {missing} not in the corpus "
                          f"(it has: {corpus.categories})")
    seed = st["seed"]
    orders = {}
    for c in sorted(cats):
        lengths = corpus.lengths(c)
        perm = rng_for(seed, "select", stage, c).permutation(len(lengths))
        orders[c] = (perm, lengths[perm])
    budgets = {c: int(orders[c][1].sum()) for c in cats}
    if any("weight" in v for v in cats.values()):
        wsum = sum(float(v["weight"]) for v in cats.values())
        total = min(budgets[c] / (float(cats[c]["weight"]) / wsum) for c in cats)
        budgets = {c: int(round(total * float(cats[c]["weight"]) / wsum)) for c in cats}
    for c, v in cats.items():
        if "max_tokens" in v:
            budgets[c] = min(budgets[c], int(v["max_tokens"]))
    selections: dict[str, Selection] = {}
    report = {"categories": {}}
    for c in sorted(cats):
        perm, lens = orders[c]
        k = len(perm) if budgets[c] >= int(lens.sum()) else take_tokens(perm, lens, budgets[c])
        selections[c] = Selection(c, perm[:k], lens[:k])
        report["categories"][c] = {
            "documents_available": int(len(perm)), "tokens_available": int(lens.sum()),
            "documents_selected": int(k), "tokens_selected": int(lens[:k].sum()),
            "token_budget": int(budgets[c]), "replay_documents": 0, "replay_tokens": 0,
        }
    rep = st["replay"]
    if rep and rep["share"] > 0:
        own = {c: set(s.rows.tolist()) for c, s in selections.items()}
        pool_cat, pool_row = [], []
        for src in rep["from"]:
            if prior and src in prior:
                src_rows = read_selection(prior[src], corpus, src)
            else:
                src_sel, _ = select_stage(corpus, dataset_cfg, src, (*_seen, stage))
                src_rows = {c: v.rows for c, v in src_sel.items()}
            for c in sorted(src_rows):
                rows = src_rows[c]
                if c in own:
                    rows = np.array([r for r in rows.tolist() if r not in own[c]], dtype=np.int64)
                pool_cat.extend([c] * len(rows))
                pool_row.extend(rows.tolist())
        # one document can be in several source stages: keep it once
        seen, uniq = set(), []
        for c, r in zip(pool_cat, pool_row):
            if (c, r) not in seen:
                seen.add((c, r))
                uniq.append((c, r))
        new_tokens = sum(s.tokens for s in selections.values())
        budget = int(round(new_tokens * rep["share"] / (1.0 - rep["share"])))
        order = rng_for(seed, "replay", stage).permutation(len(uniq))
        lens = np.array([int(corpus.lengths(uniq[i][0])[uniq[i][1]]) for i in order], dtype=np.int64)
        k = take_tokens(order, lens, budget)
        picked: dict[str, list[int]] = {}
        for i in order[:k]:
            c, r = uniq[i]
            picked.setdefault(c, []).append(r)
        for c, rows in sorted(picked.items()):
            rows_arr = np.asarray(rows, dtype=np.int64)
            add_len = corpus.lengths(c)[rows_arr]
            if c in selections:
                s = selections[c]
                selections[c] = Selection(c, np.concatenate([s.rows, rows_arr]), np.concatenate([s.lengths, add_len]))
            else:
                selections[c] = Selection(c, rows_arr, add_len)
                report["categories"][c] = {"documents_available": int(len(corpus.lengths(c))),
                                           "tokens_available": int(corpus.lengths(c).sum()),
                                           "documents_selected": 0, "tokens_selected": 0, "token_budget": 0}
            report["categories"][c]["replay_documents"] = len(rows)
            report["categories"][c]["replay_tokens"] = int(add_len.sum())
        report["replay"] = {"from": rep["from"], "share": rep["share"], "token_budget": budget,
                            "documents": int(k), "tokens": int(lens[:k].sum()),
                            "pool_documents": len(uniq)}
    return selections, report


# =========================================================================================== pass 2: a stage
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
        "tokenizer": tokenizer_path or corpus.info["tokenizer"],
        "tokenizer_digest": corpus.info["tokenizer_digest"],
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
            # bad records, per cpt.records reason (dataset.bad_records: skip)
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
    if manifest["tokens"]["lost_by_packing"] != 0:
        raise DatasetError(f"{out}: internal error: packing lost {manifest['tokens']['lost_by_packing']} tokens")
    write_selection(out, selections, corpus)
    write_manifest(out, manifest)
    return manifest


def prepare_stage(inputs: Sequence[str | os.PathLike], tokenizer_dir: str | os.PathLike, out_dir: str | os.PathLike,
                  dataset_cfg: dict, stage: str, cache_dir: str | os.PathLike | None = None,
                  progress: bool = True, section_for_provenance: dict | None = None,
                  prior: dict | None = None) -> dict:
    """Both passes for one stage (the CLI and the workflow script call this)."""
    from cpt.provenance import write_provenance

    t0 = time.time()
    cfg = settings_of(dataset_cfg)
    st = stage_settings(cfg, stage)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp_cache = cache_dir is None
    cache = Path(cache_dir) if cache_dir else Path(tempfile.mkdtemp(prefix=".tokenized-", dir=out))
    try:
        if not _cache_valid(cache, inputs, tokenizer_dir, st, cfg):
            tokenize_corpus(inputs, tokenizer_dir, cache, kind=st["kind"], num_workers=int(cfg["num_workers"]),
                            block_lines=int(cfg["block_lines"]), bad_records=cfg["bad_records"],
                            template=st["template"] or "llama2", max_length=st["max_length"], progress=progress)
        manifest = build_stage(cache, cfg, stage, out, progress=progress, tokenizer_path=str(tokenizer_dir),
                               prior=prior)
    finally:
        if tmp_cache:
            shutil.rmtree(cache, ignore_errors=True)
    write_provenance(out, f"dataset/{stage}", section_for_provenance or dataset_cfg,
                     inputs={"tokenizer": tokenizer_dir, **{f"input{i}": p for i, p in enumerate(inputs)}},
                     started=t0, extra={"num_sequences": manifest["num_sequences"],
                                        "num_tokens": manifest["num_tokens"]})
    return manifest


def section_to_config(section: dict) -> tuple[dict, str]:
    """cpt.config.dataset_section(config, stage) form ({global keys..., "stage": {...}, "name": S}) ->
    (dataset config with `stages`, stage name). Stages named in replay.from get an empty entry (their documents
    come from their selection.arrow)."""
    cfg = {k: v for k, v in section.items() if k not in ("stage", "name", "stages")}
    name = section["name"]
    st = dict(section.get("stage") or {})
    stages = {name: st}
    rep = st.get("replay") or {}
    frm = rep.get("from") or []
    for f in [frm] if isinstance(frm, str) else frm:
        if f != name:
            stages.setdefault(f, {})
    cfg["stages"] = stages
    return cfg, name


def run_rule(section: dict, inputs: Sequence, tokenizer_dir, out_dir, replay_dirs: dict | None = None) -> dict:
    """Entry point of workflow/scripts/dataset_stage.py."""
    cfg, name = section_to_config(section)
    return prepare_stage(inputs, tokenizer_dir, out_dir, cfg, name, progress=False, section_for_provenance=section,
                         prior=replay_dirs or {})


def _cache_valid(cache: Path, inputs, tokenizer_dir, st: dict, cfg: dict) -> bool:
    from cpt.provenance import describe_input

    try:
        info = read_tokenized(cache)
    except DatasetError:
        return False
    files = _jsonl_files(inputs)
    return (info["kind"] == st["kind"] and info.get("template") == (st["template"] if st["kind"] == "sft" else None)
            and [f["path"] for f in info["files"]] == [str(f) for f in files]
            and all(describe_input(f) == {k: v for k, v in g.items() if k != "path"}
                    for f, g in zip(files, info["files"]))
            and info["tokenizer_digest"] == describe_input(tokenizer_dir)
            # a cache that skipped bad records must not stand in for bad_records: error (and older caches
            # without cpt.records' counts are rebuilt)
            and info.get("bad_records") == cfg["bad_records"] and "validation" in info["records"])


# =========================================================================================== CLI
def _common_options(f):
    opts = [
        click.option("--data_input_dirs", required=True,
                     help="Comma-separated jsonl directories (every *.jsonl below) or files."),
        click.option("--tokenizer_dir", required=True, type=click.Path(exists=True, file_okay=False),
                     help="Hugging Face tokenizer directory."),
        click.option("--data_output_dirs", required=True, type=click.Path(file_okay=False),
                     help="Stage output directory (bucket-00000/ ... + manifest.json)."),
        click.option("--max_length", type=int, default=None, help="Tokens per sequence (default 4096)."),
        click.option("--num_spliced_dataset_bins", type=int, default=None,
                     help="Bins per category = buckets (default 10 pretrain, 1 sft)."),
        click.option("--seed", type=int, default=None, help="Seed of every random choice (default 42)."),
        click.option("--num_workers", type=int, default=None,
                     help="Tokenizer processes (0: the tokenizer's own threads in one process)."),
        click.option("--bad_records", type=click.Choice(BAD_RECORD_MODES), default=None),
        click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False), default=None,
                     help="A config YAML whose `dataset:` section defines the stage (categories, caps, replay)."),
        click.option("--stage", default=None, help="Stage name in --config (default: a single all-category stage)."),
        click.option("--cache_dir", type=click.Path(file_okay=False), default=None,
                     help="Keep the tokenized corpus here (reused when inputs and tokenizer are unchanged)."),
        click.option("--replay_dir", "replay_dirs", multiple=True, metavar="STAGE=DIR",
                     help="Output dir of an earlier stage named in replay.from (its selection.arrow is read); "
                          "without it that stage's selection is recomputed from --config."),
        click.option("--no_progress", is_flag=True, help="No progress bars."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _run_cli(kind: str, data_input_dirs, tokenizer_dir, data_output_dirs, max_length, num_spliced_dataset_bins,
             seed, num_workers, bad_records, config_file, stage, cache_dir, no_progress, extra: dict,
             replay_dirs=()):
    import yaml

    cfg: dict = {}
    if config_file:
        with open(config_file, encoding="utf-8") as f:
            cfg = dict((yaml.safe_load(f) or {}).get("dataset") or {})
    stage_name = stage or ("pretrain" if kind == "pretrain" else "sft")
    stages = dict(cfg.get("stages") or {})
    if stage is None or stage_name not in stages:
        if stage is not None and config_file:
            raise ConfigError(f"{config_file}: dataset.stages has no stage {stage!r}")
        stages[stage_name] = {"kind": kind}
    st = dict(stages[stage_name] or {})
    if st.get("kind", "pretrain") != kind:
        raise ConfigError(f"dataset.stages.{stage_name}.kind is {st.get('kind', 'pretrain')}, "
                          f"use `cpt prepare-{st.get('kind', 'pretrain')}`")
    for k, v in (("max_length", max_length), ("num_bins", num_spliced_dataset_bins), ("seed", seed),
                 *extra.items()):
        if v is not None:
            st[k] = v
    stages[stage_name] = st
    cfg["stages"] = stages
    for k, v in (("num_workers", num_workers), ("bad_records", bad_records)):
        if v is not None:
            cfg[k] = v
    inputs = [p for p in data_input_dirs.split(",") if p]
    prior = parse_pairs(replay_dirs, "--replay_dir", "STAGE=DIR")
    m = prepare_stage(inputs, tokenizer_dir, data_output_dirs, cfg, stage_name, cache_dir=cache_dir,
                      progress=not no_progress, prior=prior)
    click.echo(json.dumps({k: m[k] for k in ("stage", "buckets", "num_sequences", "num_tokens",
                                              "padding_fraction")} | {"documents": m["documents"]},
                          ensure_ascii=False))


@click.command("prepare-pretrain")
@_common_options
@click.option("--overlong", type=click.Choice(OVERLONG_MODES), default=None,
              help="Documents longer than max_length: split (default), truncate or drop.")
def cli_prepare_pretrain(overlong, **kw):
    """Tokenize {source, target, category} jsonl and write ordered buckets of packed sequences."""
    _run_cli("pretrain", extra={"overlong": overlong}, **kw)


@click.command("prepare-sft")
@_common_options
@click.option("--template", type=click.Choice(["llama2", "llama3", "plain"]), default=None,
              help="Conversation template (default llama2).")
@click.option("--pack/--no-pack", default=None, help="Pack several conversations per sequence (default: no).")
def cli_prepare_sft(template, pack, **kw):
    """Tokenize {messages: [...]} jsonl with a conversation template; loss on assistant turns only."""
    _run_cli("sft", extra={"template": template, "pack": pack}, **kw)
