"""Step 1.5: choosing the new pieces: the candidates of every configured source (cpt.tokenizer.candidates),
filtered and ranked, the first `vocab_size - base size` written to pieces.jsonl, the rest kept in
candidates.jsonl as the reserve the expansion step draws replacements from.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any, Mapping, Sequence

from cpt.core.errors import ConfigError, TokenizerError
from cpt.core.provenance import write_provenance
from cpt.core.schema import complete
from cpt.tokenizer.candidates import (
    Candidate,
    CandidateFilter,
    SourceStats,
    filter_candidates,
    source_candidates,
    write_pieces_jsonl,
)
from cpt.tokenizer.capacity import check_capacity
from cpt.tokenizer.family import model_file
from cpt.tokenizer.registry import open_tokenizer

log = logging.getLogger(__name__)


def select_pieces(section: Mapping[str, Any], base_dir: str | os.PathLike, out_dir: str | os.PathLike,
                  train_files: Sequence[str | os.PathLike] = (), *, seed: int) -> dict:
    """Write <out_dir>/pieces.jsonl (exactly vocab_size - base size pieces), candidates.jsonl (every surviving
    candidate in rank order, `selected` marking the pieces; the rest is the reserve) and candidates.json (counts).

    `section` is the `tokenizer` config section (keys used: vocab_size, candidates).
    """
    t0 = time.time()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    base = open_tokenizer(base_dir)
    base_size = len(base)
    given = dict(section.get("candidates") or {})
    cfg = complete("tokenizer.candidates", given, label="tokenizer.candidates")
    target = section.get("vocab_size")
    sources = cfg["sources"] or complete("tokenizer.candidates", {})["sources"]  # [] = the default sources
    charset = None
    if section.get("pieces_file"):  # the user brings the list (reference format): only structural filters apply
        sources = [{"kind": "jsonl", "name": "pieces_file", "path": section["pieces_file"]}]
        charset = given.get("charset", "any")
    filt = CandidateFilter.from_config(base.base_strings(), cfg, charset=charset)
    reserve_factor = float(cfg["reserve"])
    need = None if target is None else int(target) - base_size
    if need is not None and need < 0:
        raise ConfigError(f"tokenizer.vocab_size: {target} is smaller than the base vocabulary ({base_size})")
    loaded = check_capacity(sources, need, target, filt, lambda spec, i: source_candidates(spec, train_files, seed,
                                                                                              out, i))
    ranked: list[Candidate] = []
    per_source: dict[str, dict] = {}
    for i, spec in enumerate(sources):
        name, cands, info = loaded.get(i) or source_candidates(spec, train_files, seed, out, i)
        stats = SourceStats()
        limit = None if need is None else need + max(int(need * reserve_factor), 100)
        for c in filter_candidates(cands, filt, stats):
            ranked.append(c)
            if limit is not None and len(ranked) >= limit:
                break
        per_source[name] = {**info, **stats.as_dict()}
        log.info("candidates from %s: %s", name, per_source[name])
        if limit is not None and len(ranked) >= limit:
            break
    if need is None:
        need = len(ranked)
    if len(ranked) < need:
        raise TokenizerError(
            f"tokenizer.candidates: only {len(ranked)} candidates survive the filters but vocab_size {target} needs "
            f"{need} new pieces; raise sources[train].vocab_size, add a word list source (jieba, gguf) or lower "
            f"tokenizer.vocab_size (rejections: {per_source})")
    selected = [c.piece for c in ranked[:need]]
    write_pieces_jsonl(selected, out / "pieces.jsonl")
    with open(out / "candidates.jsonl", "w", encoding="utf-8") as f:
        for rank, c in enumerate(ranked):
            f.write(json.dumps({"piece": c.piece, "source": c.source, "score": c.score, "rank": rank,
                                "selected": rank < need}, ensure_ascii=False) + "\n")
    lengths = Counter(len(p) for p in selected)
    report = {"base_vocab_size": base_size, "target_vocab_size": base_size + need, "selected": need,
              "reserve": len(ranked) - need, "sources": per_source,
              "selected_by_source": dict(Counter(c.source for c in ranked[:need])),
              "selected_by_length": {str(k): v for k, v in sorted(lengths.items())},
              "wall_seconds": round(time.time() - t0, 2)}
    (out / "candidates.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    inputs = {"base": model_file(base_dir)}
    inputs.update({f"train_{i}": f for i, f in enumerate(train_files)})
    write_provenance(out, "tokenizer_pieces", dict(section), inputs=inputs, started=t0,
                     filename="pieces.provenance.json", extra={"report": report})
    return report
