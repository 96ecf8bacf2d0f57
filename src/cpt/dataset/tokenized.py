"""Pass 1: stream jsonl files in blocks of lines, parse + tokenize them (a process pool, or the tokenizer's own
threads), append to one memory-mapped arrow file per category; `Corpus` reads that cache back."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from tqdm import tqdm

from cpt.artifacts.identity import tokenizer_identity
from cpt.artifacts.inputs import iter_raw_lines
from cpt.artifacts.records import RecordStats, empty_file_error, expand_paths
from cpt.core.errors import DatasetError, RecordError
from cpt.dataset.packing import add_bad_records_hint, tokenize_pretrain_lines
from cpt.dataset.shards import TokenizedDocs, TokenizedWriter, open_tokenized

TOKENIZED_INFO = "tokenized.json"


def _iter_blocks(files: list[Path], block_lines: int, progress: bool):
    """(file_index, path, first_line, [raw lines]) blocks, with a byte progress bar."""
    total = sum(f.stat().st_size for f in files)
    bar = tqdm(total=total, unit="B", unit_scale=True, desc="tokenize", disable=not progress, file=sys.stderr)
    for fi, path in enumerate(files):
        with open(path, "rb") as f:
            block, first = [], 1
            for no, line in enumerate(iter_raw_lines(f), start=1):
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
    from cpt.dataset.packing import load_tokenizer

    return load_tokenizer(tokenizer_dir)


def _init_worker(settings: dict):
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _WORKER.clear()
    _WORKER.update(_make_state(settings))


def _make_state(settings: dict) -> dict:
    tok = _load_tokenizer(settings["tokenizer_dir"])
    state = {"settings": settings, "backend": tok.backend, "bos": tok.bos_token_id, "eos": tok.eos_token_id}
    if settings["kind"] == "sft":
        from cpt.dataset.sft import SFTEncoder

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
                                    s["on_bad_record"])
        return fi, b.categories, b.ids, b.offsets, b.n_masked, None, b.lines, {}, b.records
    from cpt.dataset.packing import _flatten
    from cpt.dataset.sft import tokenize_sft_lines

    default_cat = Path(path).stem
    records = RecordStats()
    cats, ids, labels, line_nos, stats = tokenize_sft_lines(state["sft"], lines, path, first, default_cat,
                                                            s["on_bad_record"], records)
    flat, offsets = _flatten(ids)
    lab, _ = _flatten(labels)
    return fi, cats, flat, offsets, None, lab, np.asarray(line_nos, dtype=np.int64), stats, records


def tokenize_corpus(inputs: Sequence[str | os.PathLike], tokenizer_dir: str | os.PathLike,
                    out_dir: str | os.PathLike, dataset_cfg: Mapping | None = None, stage: str | None = None,
                    progress: bool = True) -> dict:
    """Pass 1 with the settings of `stage` of `dataset_cfg` (no stage: a pretraining stage with the dataset-wide
    settings). Writes out_dir/cat-NNNNN.arrow per category + tokenized.json; returns that info."""
    from cpt.core.provenance import describe_input
    from cpt.dataset.settings import settings_of, stage_settings

    cfg = settings_of(dataset_cfg)
    st = stage_settings(cfg, stage) if stage else stage_settings({**cfg, "stages": {"corpus": {}}}, "corpus")
    kind, template, max_length = st["kind"], st["template"], st["max_length"]
    num_workers, block_lines, on_error = cfg["num_workers"], cfg["block_lines"], cfg["on_bad_record"]
    files = expand_paths(inputs)
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
    settings = {"tokenizer_dir": str(fast_dir or tok_dir), "kind": kind, "on_bad_record": on_error,
                "template": template, "max_length": int(max_length)}
    writers: dict[str, TokenizedWriter] = {}
    counts: dict[str, int] = {}
    validation = RecordStats(files=len(files))
    seen_in_file = [0] * len(files)   # records + bad lines per file: none = cpt.artifacts.records' empty_file
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
        "tokenizer_identity": tokenizer_identity(tokenizer_dir),  # what `cpt train` compares with the model's
        "vocab_size": len(tok),
        "bos_id": tok.bos_token_id,
        "eos_id": tok.eos_token_id,
        "template": template if kind == "sft" else None,
        "on_bad_record": on_error,
        "files": [{"path": str(f), **describe_input(f)} for f in files],
        "categories": {cat: {"file": w.path.name, "documents": w.rows, "tokens": w.tokens}
                       for cat, w in sorted(writers.items())},
        # validation: cpt.artifacts.records' counts (lines, blank lines, bad records per cpt.artifacts.records reason, examples);
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

