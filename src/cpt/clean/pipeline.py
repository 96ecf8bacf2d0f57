"""The cleaning stage: raw corpus jsonl per category -> cleaned jsonl per category + report.

Data flow (streaming; memory grows only with the MinHash signatures of documents that pass the filters)::

    results/<exp>/corpus/raw/<category>.jsonl
      -- prepare (per category; worker processes over chunks of lines) -->
         parse -> normalise -> filters (first failing reason wins) -> quality score -> exact key + MinHash
         work/<category>.docs.jsonl  (passing documents, normalised, with line, key, score)
         work/<category>.sig         (their signatures, uint32 rows) + work/<category>.meta.json (counts, examples)
      -- finalize (one process, all categories in sorted order) -->
         quality cut per category (min_score, then top_fraction) -> exact dedup -> near dedup (LSH index)
         results/<exp>/clean/<category>.jsonl + report.json + report.md

Every input line ends in exactly one place: kept, or counted under the first reason that applies, in
``REASON_ORDER``: invalid_record (read by cpt.artifacts.records; only with ``on_bad_record: skip``, else the first bad line
is a RecordError naming file:line), empty, the filter reasons of filters.py in
their order, low_quality, exact_duplicate, near_duplicate. ``report.json`` checks that input = kept + dropped
for every category.

Scale. On one machine ``run_clean`` does both steps with a ``multiprocessing`` pool (``workers``) and a bounded
number of chunks in flight, so input files are streamed, never loaded whole. On a cluster the two steps are
separate Snakemake jobs (workflow/rules/clean.smk): ``clean_prepare`` runs once per category (the shard is the
category file, a wildcard) and is submitted through the SLURM profile like any other rule, with ``threads``
workers inside the job; ``clean_finalize`` is a second, single job, because cross-shard deduplication needs one
LSH index that has seen every signature (a signature is 4 bytes x num_perm = 512 bytes per document at num_perm
128; with the LSH tables about 1-2 GB per million documents kept, which one node holds up to tens of millions).
Splitting one very large category file into several prepare jobs is not implemented (finalize already accepts
many work directories; prepare would need a byte-range or line-modulo shard option). datatrove's executor was
not used: it is not installed or pinned here, its dedup is its own multi-stage file protocol, and Snakemake +
SLURM already give per-shard jobs, reruns on changed config, logs and provenance.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
from collections import deque
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import numpy as np
import orjson

from cpt.artifacts import records as rec_io
from cpt.clean import dedup as dd
from cpt.clean import filters as fl
from cpt.clean import quality as ql
from cpt.clean.normalize import normalize_text
from cpt.clean.report import report_markdown, score_summary
from cpt.clean.settings import category_language, category_params, resolve_section
from cpt.core.errors import ConfigError, CptError

STAGE = "clean"
REASON_ORDER = (
    ("invalid_record", "empty")
    + tuple(r for f in fl.FILTER_ORDER for r in fl.FILTER_REASONS[f])
    + ("low_quality", "exact_duplicate", "near_duplicate")
)
EXAMPLE_CHARS = 300

# ----------------------------------------------------------------------------------------------- records

def _chunks(it: Iterable, size: int) -> Iterator[list]:
    buf = []
    for x in it:
        buf.append(x)
        if len(buf) >= size:
            yield buf
            buf = []
    if buf:
        yield buf


# ----------------------------------------------------------------------------------------------- workers

_WORKER: dict = {}


def _init_worker(params_by_category: dict):
    _WORKER["params"] = params_by_category


def doc_text(source: str, target: str) -> str:
    return f"{source}\n{target}" if source else target


def _process_chunk(task: tuple) -> dict:
    """Worker: normalise, filter, score, hash one chunk of (line number, record) of one category."""
    category, items = task
    p = _WORKER["params"][category]
    lang, npar, fpar, qpar = p["language"], p["normalize"], p["filters"], p["quality"]
    results, shingle_lists = [], []
    for lineno, rec in items:
        source, target = rec.get("source") or "", rec["target"]
        raw_chars = len(source) + len(target)
        source, target = normalize_text(source, npar, lang), normalize_text(target, npar, lang)
        text = doc_text(source, target)
        stats = fl.TextStats(text, lang)
        reason = "empty" if stats.chars == 0 else fl.first_failure(stats, fpar)
        entry = {"line": lineno, "reason": reason, "chars": raw_chars}
        if reason is not None:
            entry["example"] = text[:EXAMPLE_CHARS] if text else doc_text(rec.get("source") or "", rec["target"])
        else:
            entry["record"] = {"source": source, "target": target, "category": category}
            entry["score"] = ql.score(stats, qpar)
            entry["key"] = dd.exact_key(text)
            entry["mismatch"] = rec.get("category") != category
            if p["near"]:
                shingle_lists.append(dd.shingles(text, lang, p["ngram"]))
        results.append(entry)
    sigs = dd.signatures(shingle_lists, p["num_perm"], p["seed"]) if p["near"] else None
    return {"results": results, "signatures": sigs}


# ----------------------------------------------------------------------------------------------- prepare

def _pool(workers: int):
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    return multiprocessing.get_context(method)


def prepare(inputs: Mapping[str, str | os.PathLike], languages: Mapping[str, str] | None, section: Mapping | None,
            work_dir: str | os.PathLike, workers: int | None = None, progress: bool = True) -> dict:
    """Step 1 for each category: write work/<category>.{docs.jsonl,sig,meta.json}; returns the metas."""
    from tqdm import tqdm

    sec = resolve_section(section)
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    params = {c: category_params(sec, c, category_language(sec, c, languages)) for c in inputs}
    n = workers if workers is not None else sec["workers"]
    n = n or os.cpu_count() or 1
    metas = {}
    pool = None
    # load the language model (~3 s) and datasketch (~2 s, scipy) once, before forking the workers
    fl._identifier()
    import datasketch  # noqa: F401
    if n > 1:
        pool = _pool(n).Pool(n, initializer=_init_worker, initargs=(params,))
    else:
        _init_worker(params)
    try:
        for category in sorted(inputs):
            path = str(inputs[category])
            meta = {"category": category, "language": params[category]["language"], "input_path": path,
                    "input": 0, "passed": 0, "chars_in": 0, "dropped": {}, "examples": {},
                    "category_mismatch": 0, "num_perm": params[category]["num_perm"], "params": params[category]}
            # cpt.artifacts.records reads and validates (file:line errors, or counts per reason with on_bad_record: skip)
            rstats = rec_io.RecordStats()
            located = rec_io.iter_located(path, "pretrain", on_error=sec["on_bad_record"], stats=rstats,
                                          default_category=category)
            tasks = ((category, chunk) for chunk in _chunks(((ln, r) for _, ln, r in located), sec["chunk_size"]))
            with open(work / f"{category}.docs.jsonl", "wb") as docs, \
                    open(work / f"{category}.sig", "wb") as sigf, \
                    tqdm(desc=f"clean {category}", unit="doc", disable=not progress) as bar:
                for out in _run_tasks(pool, tasks, n):
                    for e in out["results"]:
                        meta["input"] += 1
                        meta["chars_in"] += e["chars"]
                        if e["reason"] is not None:
                            _count(meta, e["reason"], e["line"], e["example"], sec["examples_per_reason"])
                            continue
                        meta["passed"] += 1
                        meta["category_mismatch"] += e["mismatch"]
                        docs.write(orjson.dumps({"line": e["line"], "key": e["key"], "score": e["score"],
                                                 "record": e["record"]}) + b"\n")
                    if out["signatures"] is not None:
                        sigf.write(np.ascontiguousarray(out["signatures"], dtype="<u4").tobytes())
                    bar.update(len(out["results"]))
            bad = {r: c for r, c in sorted(rstats.skipped.items()) if r != "empty_file"}
            if bad:
                meta["input"] += sum(bad.values())
                meta["dropped"]["invalid_record"] = sum(bad.values())
                meta["invalid_reasons"] = bad
                meta["examples"]["invalid_record"] = [
                    {"line": None, "text": m[-EXAMPLE_CHARS:]} for m in rstats.examples[:sec["examples_per_reason"]]]
            (work / f"{category}.meta.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1) + "\n",
                                                        encoding="utf-8")
            metas[category] = meta
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    return metas


def _run_tasks(pool, tasks: Iterator, workers: int) -> Iterator[dict]:
    """Results in task order; at most 4 x workers chunks in flight (input is streamed, not slurped)."""
    if pool is None:
        for t in tasks:
            yield _process_chunk(t)
        return
    pending: deque = deque()
    for t in tasks:
        pending.append(pool.apply_async(_process_chunk, (t,)))
        if len(pending) >= 4 * workers:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()


def _count(meta: dict, reason: str, line: int, example: str | None, k: int):
    meta["dropped"][reason] = meta["dropped"].get(reason, 0) + 1
    ex = meta["examples"].setdefault(reason, [])
    if len(ex) < k and example is not None:
        ex.append({"line": line, "text": example[:EXAMPLE_CHARS]})


# ----------------------------------------------------------------------------------------------- finalize

def _read_docs(path: Path) -> Iterator[dict]:
    with open(path, "rb") as f:
        for line in f:
            yield orjson.loads(line)


def quality_cut(scores: list[float], min_score: float | None, top_fraction: float | None) -> list[bool]:
    """Which documents of a category survive the quality cut (True = keep). Deterministic: ties by order."""
    keep = [min_score is None or s >= min_score for s in scores]
    if top_fraction is not None:
        idx = [i for i, k in enumerate(keep) if k]
        n_keep = int(np.ceil(float(top_fraction) * len(idx)))
        ranked = sorted(idx, key=lambda i: (-scores[i], i))
        chosen = set(ranked[:n_keep])
        keep = [i in chosen for i in range(len(scores))]
    return keep


def finalize(work_dir: str | os.PathLike | Iterable[str | os.PathLike], out_dir: str | os.PathLike,
             section: Mapping | None, categories: Iterable[str] | None = None, progress: bool = True) -> dict:
    """Step 2: quality cut, dedup across categories, write outputs and the report; returns the report.

    work_dir: one directory or several (e.g. one per prepare job); each holds <category>.{meta.json,docs.jsonl,sig}.
    """
    from tqdm import tqdm

    sec = resolve_section(section)
    dirs = [Path(work_dir)] if isinstance(work_dir, (str, os.PathLike)) else [Path(d) for d in work_dir]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    where: dict[str, Path] = {}
    for d_ in dirs:
        for mp in sorted(d_.glob("*.meta.json")):
            c = mp.name[: -len(".meta.json")]
            if c in where:
                raise CptError(f"category {c!r} prepared twice ({where[c]} and {d_}); give each work dir once")
            where[c] = d_
    cats = sorted(categories) if categories is not None else sorted(where)
    metas = {}
    for c in cats:
        if c not in where:
            raise CptError(f"{c}.meta.json: missing in {', '.join(map(str, dirs))}; run the prepare step for "
                           f"category {c!r} first")
        metas[c] = json.loads((where[c] / f"{c}.meta.json").read_text(encoding="utf-8"))
    d = sec["dedup"]
    dedup = dd.Deduplicator(exact=d["exact"], near=d["near"], threshold=float(d["threshold"]),
                            num_perm=int(d["num_perm"]), seed=int(sec["seed"]), scope=d["scope"],
                            bands=d["bands"], rows=d["rows"])
    decisions: dict[str, list] = {}
    quality: dict[str, dict] = {}
    gid = 0
    for c in cats:
        meta = metas[c]
        work = where[c]
        docs = [(r["line"], r["key"], r["score"]) for r in _read_docs(work / f"{c}.docs.jsonl")]
        if len(docs) != meta["passed"]:
            raise CptError(f"{work / (c + '.docs.jsonl')}: {len(docs)} documents, meta says {meta['passed']}; "
                           f"rerun the prepare step")
        sigs = None
        if d["near"] and docs:
            if meta["num_perm"] != int(d["num_perm"]):
                raise CptError(f"{work}: signatures of {c!r} have num_perm {meta['num_perm']}, config "
                               f"clean.dedup.num_perm is {d['num_perm']}; rerun the prepare step")
            sigs = np.fromfile(work / f"{c}.sig", dtype="<u4").reshape(len(docs), meta["num_perm"])
        q = category_params(sec, c, meta["language"])["quality"]  # the current config decides the cut
        scores = [s for _, _, s in docs]
        keep_q = quality_cut(scores, q.get("min_score"), q.get("top_fraction"))
        quality[c] = score_summary(scores, q)
        dec = []
        for i, (line, key, _) in enumerate(tqdm(docs, desc=f"dedup {c}", unit="doc", disable=not progress)):
            if not keep_q[i]:
                dec.append(("low_quality", None))
            else:
                reason, rep = dedup.add(gid, c, line, key, sigs[i] if sigs is not None else None)
                dec.append((reason, dedup.meta[rep] if rep is not None else None))
            gid += 1
        decisions[c] = dec
    report = {"stage": STAGE, "reasons_order": list(REASON_ORDER), "categories": {}, "totals": {},
              "duplicates": dedup.summary()}
    k = sec["examples_per_reason"]
    for c in cats:
        meta = metas[c]
        kept = chars_kept = 0
        tmp = out / f".{c}.jsonl.tmp"
        with open(tmp, "wb") as f:
            for doc, (reason, rep) in zip(_read_docs(where[c] / f"{c}.docs.jsonl"), decisions[c]):
                rec = doc["record"]
                if reason is None:
                    f.write(rec_io.dumps_record(rec))
                    kept += 1
                    chars_kept += len(rec["source"]) + len(rec["target"])
                else:
                    text = doc_text(rec["source"], rec["target"])
                    note = f" [duplicate of {rep[0]}:{rep[1]}]" if rep else f" [score {doc['score']}]"
                    _count(meta, reason, doc["line"], text[:EXAMPLE_CHARS - len(note)] + note, k)
        os.replace(tmp, out / f"{c}.jsonl")
        dropped = {r: meta["dropped"][r] for r in REASON_ORDER if meta["dropped"].get(r)}
        if kept + sum(dropped.values()) != meta["input"]:
            raise CptError(f"clean: counts of {c!r} do not balance ({meta['input']} in, {kept} kept, "
                           f"{sum(dropped.values())} dropped); this is a bug, please report it")
        report["categories"][c] = {
            "language": meta["language"], "input_path": meta["input_path"], "input": meta["input"],
            "kept": kept, "dropped": dropped, "dropped_total": sum(dropped.values()),
            "kept_fraction": round(kept / meta["input"], 6) if meta["input"] else 0.0,
            "chars_in": meta["chars_in"], "chars_kept": chars_kept,
            "category_mismatch": meta["category_mismatch"], "invalid_reasons": meta.get("invalid_reasons", {}),
            "quality": quality[c],
            "examples": {r: meta["examples"][r] for r in REASON_ORDER if r in meta["examples"]},
        }
    tot = {"input": 0, "kept": 0, "chars_in": 0, "chars_kept": 0, "dropped": {}}
    for c in cats:
        r = report["categories"][c]
        for key in ("input", "kept", "chars_in", "chars_kept"):
            tot[key] += r[key]
        for reason, n in r["dropped"].items():
            tot["dropped"][reason] = tot["dropped"].get(reason, 0) + n
    tot["dropped"] = {r: tot["dropped"][r] for r in REASON_ORDER if r in tot["dropped"]}
    report["totals"] = tot
    (out / "report.json").write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    (out / "report.md").write_text(report_markdown(report), encoding="utf-8")
    return report


# ----------------------------------------------------------------------------------------------- one call

def run_clean(inputs: Mapping[str, str | os.PathLike], out_dir: str | os.PathLike,
              section: Mapping | None = None, languages: Mapping[str, str] | None = None,
              workers: int | None = None, progress: bool = True) -> dict:
    """prepare + finalize on one machine. inputs: category -> raw jsonl; writes out_dir/<category>.jsonl,
    report.json, report.md. Work files go to out_dir/.work (removed unless clean.keep_work)."""
    sec = resolve_section(section)
    if not inputs:
        raise ConfigError("clean: no input categories")
    work = Path(out_dir) / ".work"
    if work.exists():
        shutil.rmtree(work)
    prepare(inputs, languages, sec, work, workers=workers, progress=progress)
    report = finalize(work, out_dir, sec, categories=list(inputs), progress=progress)
    if not sec["keep_work"]:
        shutil.rmtree(work)
    return report
