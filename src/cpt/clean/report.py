"""report.md of the cleaning stage: per-category table, drop reasons, quality scores, duplicate clusters, examples."""

from __future__ import annotations

import numpy as np


def score_summary(scores: list[float], q: dict) -> dict:
    base = {"min_score": q.get("min_score"), "top_fraction": q.get("top_fraction"), "hook": q.get("hook")}
    if not scores:
        return {**base, "n": 0}
    a = np.asarray(scores, dtype=np.float64)
    pct = np.percentile(a, [10, 50, 90])
    return {**base, "n": int(a.size), "mean": round(float(a.mean()), 4), "min": round(float(a.min()), 4),
            "p10": round(float(pct[0]), 4), "p50": round(float(pct[1]), 4), "p90": round(float(pct[2]), 4)}


def report_markdown(report: dict) -> str:
    """report.md: per-category table, drop reasons, duplicate clusters, examples (for the HTML report)."""
    cats = report["categories"]
    reasons = [r for r in report["reasons_order"] if r in report["totals"]["dropped"]]
    lines = ["# Corpus cleaning report", "",
             "Every input record is kept or counted under exactly one reason (the first that applies, in this "
             "order: " + ", ".join(report["reasons_order"]) + ").", "",
             "| category | lang | input | kept | kept % | " + " | ".join(reasons) + " |",
             "|---|---|---:|---:|---:|" + "---:|" * len(reasons)]
    for c, r in cats.items():
        lines.append(f"| {c} | {r['language']} | {r['input']} | {r['kept']} | {100 * r['kept_fraction']:.1f} | "
                     + " | ".join(str(r["dropped"].get(x, 0)) for x in reasons) + " |")
    t = report["totals"]
    pct = 100 * t["kept"] / t["input"] if t["input"] else 0.0
    lines.append(f"| **total** | | {t['input']} | {t['kept']} | {pct:.1f} | "
                 + " | ".join(str(t["dropped"].get(x, 0)) for x in reasons) + " |")
    lines += ["", "## Quality scores (documents that passed the filters)", "",
              "| category | n | mean | p10 | p50 | p90 | min_score | top_fraction |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for c, r in cats.items():
        q = r["quality"]
        lines.append(f"| {c} | {q['n']} | {q.get('mean', '')} | {q.get('p10', '')} | {q.get('p50', '')} | "
                     f"{q.get('p90', '')} | {q['min_score']} | {q['top_fraction']} |")
    du = report["duplicates"]
    lines += ["", "## Duplicates", "",
              f"{du['clusters']} clusters; {du['exact_duplicates']} exact and {du['near_duplicates']} near "
              f"duplicates dropped ({du['cross_category_duplicates']} across categories).", ""]
    for cl in du["largest"]:
        rep = cl["representative"]
        members = ", ".join(f"{m['category']}:{m['line']} ({m['kind']}, {m['similarity']})" for m in cl["members"])
        lines.append(f"- {rep['category']}:{rep['line']} x{cl['size']}: {members}")
    lines += ["", "## Examples of dropped text", ""]
    for c, r in cats.items():
        for reason, exs in r["examples"].items():
            for ex in exs:
                text = ex["text"].replace("\n", " ⏎ ").replace("|", "\\|")
                lines.append(f"- `{c}` line {ex['line']} — **{reason}**: {text}")
    return "\n".join(lines) + "\n"
