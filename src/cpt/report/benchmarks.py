"""The report's benchmark tables: accuracy per evaluation point next to the published 7B numbers, and per
(point, benchmark) what the accuracy means: the answer-letter distribution (predicted and gold), the
majority-letter baseline and a "degenerate" mark (one letter >= 90% of the answers), or why it was skipped.
Read from evaluate/<point>/benchmarks.json (cpt.evaluate.run)."""

from __future__ import annotations

import math
from typing import Mapping

from cpt.evaluate.answer_stats import DEGENERATE_SHARE, distribution_text

PUBLISHED = {
    "Colossal-LLaMA-2-7B": {"mmlu": 53.06, "cmmlu": 49.89, "agieval": 51.48, "gaokao": 58.82, "ceval": 50.20},
    "LLaMA-2-7B": {"mmlu": 44.47, "cmmlu": 32.97, "agieval": 32.60, "gaokao": 25.46, "ceval": None},
}
BENCH_ORDER = ("mmlu", "cmmlu", "agieval", "gaokao", "ceval")
DEGENERATE_MARK = "degenerate"
NOTE = (f"Accuracy (%). '{DEGENERATE_MARK}': one answer letter takes >= {DEGENERATE_SHARE:.0%} of the model's answers, "
        f"so its accuracy is about the share of that letter among the gold answers (see the majority baseline) and "
        f"says nothing about what it knows. 'skipped': not run because its probe benchmark was degenerate.")


def _pct(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.2f}"


def cell(result: Mapping | None) -> str:
    """One accuracy cell: "24.04 (degenerate)", "skipped", "-" (not evaluated)."""
    if result is None:
        return "-"
    if result.get("status") == "skipped":
        return "skipped"
    text = _pct(result.get("accuracy"))
    return f"{text} ({DEGENERATE_MARK})" if result.get("degenerate") else text


def bench_names(data: Mapping) -> list[str]:
    names: list[str] = []
    for p in data["points"]:
        for n in data["benchmarks"].get(p, {}):
            if n not in names:
                names.append(n)
    names.sort(key=lambda n: (BENCH_ORDER.index(n) if n in BENCH_ORDER else len(BENCH_ORDER), n))
    return names


def benchmark_rows(data: Mapping) -> tuple[list[str], list[list[str]]]:
    """model x benchmark accuracy (with the degenerate / skipped marks), then the published rows."""
    names = bench_names(data)
    header = ["model"] + names
    rows = []
    for p in data["points"]:
        if p in data["benchmarks"]:
            b = data["benchmarks"][p]
            rows.append([p] + [cell(b.get(n)) for n in names])
    for model, scores in PUBLISHED.items():
        rows.append([f"{model} (published)"] + [_pct(scores.get(n)) if n in scores else "n/a" for n in names])
    return header, rows


def distribution_rows(data: Mapping) -> tuple[list[str], list[list[str]]]:
    """One row per (point, benchmark): accuracy, majority baseline, predicted and gold letter shares, mark."""
    header = ["model", "benchmark", "accuracy", "majority baseline", "predicted letters", "gold letters", "mark"]
    rows = []
    for p in data["points"]:
        for n in bench_names(data):
            r = (data["benchmarks"].get(p) or {}).get(n)
            if r is None:
                continue
            if r.get("status") == "skipped":
                rows.append([p, n, "-", "-", "-", "-", f"skipped: {r.get('skip_reason', '')}"])
                continue
            dist = r.get("answer_distribution")
            rows.append([p, n, _pct(r.get("accuracy")), _pct(r.get("majority_baseline")),
                         distribution_text(dist, "predicted"), distribution_text(dist, "gold"),
                         DEGENERATE_MARK if r.get("degenerate") else ""])
    return header, rows
