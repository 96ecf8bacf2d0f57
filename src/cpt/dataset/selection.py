"""A stage's documents: categories with token caps or mixing weights, plus a replay share drawn from the documents
earlier stages selected (their selection.arrow). Deterministic: every draw is seeded."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from cpt.core.errors import ConfigError, DatasetError
from cpt.dataset.buckets import Selection, rng_for, take_tokens
from cpt.dataset.settings import stage_settings
from cpt.dataset.tokenized import Corpus

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
            elif src in (dataset_cfg.get("stages") or {}):
                src_sel, _ = select_stage(corpus, dataset_cfg, src, (*_seen, stage))
                src_rows = {c: v.rows for c, v in src_sel.items()}
            else:
                raise ConfigError(f"dataset.stages.{stage}.replay.from: {src!r} is neither a stage of this dataset "
                                  f"config nor given as an earlier stage's output (--replay_dir {src}=DIR)")
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

