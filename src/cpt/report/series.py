"""The report's curves as CSV tables (report/bpb.csv, report/loss.csv): what `dvc plots show/diff` draws (the
top-level `plots:` of a generated dvc.yaml, cpt.workflow.dvc_metrics) and any spreadsheet reads."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Mapping

BPB_CSV = "bpb.csv"
LOSS_CSV = "loss.csv"


def write_series(out: Path, data: Mapping) -> list[str]:
    """bpb.csv: one row per evaluation point in order (point_index, point, then bits per byte per language);
    loss.csv: one row per training step of every stage in order (global_step counts across stages)."""
    points = list(data.get("points") or [])
    bpb = {p: (data.get("bpb", {}).get(p) or {}).get("languages") or {} for p in points}
    langs = sorted({lang for v in bpb.values() for lang in v})
    with open(out / BPB_CSV, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["point_index", "point", *langs])
        for i, p in enumerate(points):
            if bpb[p]:
                w.writerow([i, p, *((bpb[p].get(lang) or {}).get("bits_per_byte", "") for lang in langs)])
    with open(out / LOSS_CSV, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["global_step", "stage", "step", "tokens", "loss"])
        g = 0
        for stage, records in (data.get("train") or {}).items():
            for r in records or []:
                g += 1
                w.writerow([g, stage, r["step"], r.get("tokens", ""), r["loss"]])
    return [BPB_CSV, LOSS_CSV]
