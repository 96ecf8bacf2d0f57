"""Step 1.6 as a stage: the extended tokenizer directory from the base tokenizer and the selected pieces, with
expansion.json (what was added, repaired, dropped) and the English and slow/fast agreement checks. The algorithm
for SentencePiece models is cpt.tokenizer.spm_extend; a byte-level BPE base extends itself
(cpt.tokenizer.bpe); both through the family protocol (cpt.tokenizer.family).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from cpt.core.provenance import write_provenance
from cpt.core.schema import complete
from cpt.core.sources import read_member
from cpt.tokenizer.base import AGREEMENT_SAMPLE
from cpt.tokenizer.candidates import read_pieces_jsonl, read_texts
from cpt.tokenizer.family import chat_template_of, model_file
from cpt.tokenizer.registry import open_tokenizer
from cpt.tokenizer.spm_extend import EXTEND_OPTIONS

log = logging.getLogger(__name__)


def _english_lines(files: Sequence[str | os.PathLike], limit: int, section: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    if files:
        for text in read_texts(files):
            lines.extend(x for x in text.split("\n") if x.strip())
            if len(lines) >= limit:
                break
    else:
        src = section.get("english_source", {"source": "sentencepiece", "member": "test/botchan.txt"})
        raw = read_member(src["source"], src["member"]).decode("utf-8").lstrip("\ufeff")
        lines = [x for x in raw.splitlines() if x.strip()]
    return lines[:limit]


def build_extended_tokenizer(section: Mapping[str, Any], base_dir: str | os.PathLike,
                             pieces_path: str | os.PathLike, out_dir: str | os.PathLike,
                             candidates_path: str | os.PathLike | None = None,
                             english_files: Sequence[str | os.PathLike] = (),
                             zh_files: Sequence[str | os.PathLike] = ()) -> dict:
    """Write the extended tokenizer HF directory + expansion.json + provenance.json.

    `section` is the `tokenizer` config section (keys: vocab_size, expansion.{score, unreachable,
    max_repair_pieces, max_rounds, english_lines, agreement_lines, require_fast_agreement, english_source}). `english_files` / `zh_files`: held-out text for the English
    check and the slow/fast agreement sample (default English: Botchan from the sentencepiece sdist).
    """
    t0 = time.time()
    cfg = complete("tokenizer.expansion", section.get("expansion"))
    base = open_tokenizer(base_dir)
    pieces = read_pieces_jsonl(pieces_path)
    reserve: list[str] = []
    if candidates_path and Path(candidates_path).is_file():
        with open(candidates_path, encoding="utf-8") as f:
            reserve = [r["piece"] for r in map(json.loads, f) if not r.get("selected")]
    options = {k: cfg[k] for k in EXTEND_OPTIONS if k in cfg}
    ext, report = base.extend(pieces, reserve, section.get("vocab_size"), **options)
    english = _english_lines(english_files, int(cfg["english_lines"]), cfg)
    report["english"] = base.english_check(ext, english)
    out = ext.save(out_dir, chat_template=chat_template_of(base_dir))  # the base tokenizer's, if it has one
    n = int(cfg["agreement_lines"])
    zh = []
    if zh_files:
        for text in read_texts(zh_files):
            zh.extend(x for x in text.split("\n") if x.strip())
            if len(zh) >= n:
                break
    sample = list(AGREEMENT_SAMPLE) + zh[:n] + english[:n]
    # score: zero (the reference) ties all new pieces; HF's fast BPE then breaks ties by merge rank, not leftmost
    # position, and disagrees with sentencepiece (measured, 69,104 pieces: 161 of 317 texts). Allowed only on request.
    report["agreement"] = ext.check_agreement(out, sample, what="extended tokenizer",
                                              raise_on_mismatch=cfg["require_fast_agreement"])
    report["wall_seconds"] = round(time.time() - t0, 2)
    (Path(out) / "expansion.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n",
                                              encoding="utf-8")
    inputs = {"base": model_file(base_dir), "pieces": pieces_path}
    if candidates_path:
        inputs["candidates"] = candidates_path
    for i, f in enumerate(english_files):
        inputs[f"english_{i}"] = f
    write_provenance(out, "tokenizer_extended", dict(section), inputs=inputs, started=t0,
                     extra={"report": {k: v for k, v in report.items() if k != "examples"}})
    return report
