"""What a benchmark result says beyond its accuracy: per-subject and overall accuracy, the answer-letter
distribution (predicted and gold), the majority-letter baseline and whether the model is degenerate.

A model that answers one letter to every question scores the share of that letter among the gold answers (MMLU:
about 25%) and cannot be told apart from another such model by accuracy alone. The result therefore carries:
- `answer_distribution`: {"predicted": {letter: count}, "gold": {letter: count}} over every scored question;
- `majority_baseline`: accuracy (%) of always answering the most frequent gold letter;
- `top_letter_share`: the largest share of one letter among the predictions (0..1);
- `degenerate`: true when that share is at least DEGENERATE_SHARE (0.9).
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Mapping, Sequence

DEGENERATE_SHARE = 0.9


def aggregate(records: Iterable[dict], key: str = "correct") -> dict:
    """Per-subject accuracy and the sample-weighted overall accuracy (percent), plus the unweighted mean."""
    per: dict[str, list[int]] = {}
    for r in records:
        s = per.setdefault(r["subject"], [0, 0])
        s[0] += int(bool(r[key]))
        s[1] += 1
    subjects = {k: {"correct": c, "total": n, "accuracy": 100.0 * c / n} for k, (c, n) in sorted(per.items())}
    total = sum(v["total"] for v in subjects.values())
    correct = sum(v["correct"] for v in subjects.values())
    return {
        "num_questions": total,
        "correct": correct,
        "accuracy": 100.0 * correct / total if total else float("nan"),
        "macro_accuracy": (sum(v["accuracy"] for v in subjects.values()) / len(subjects)) if subjects else float("nan"),
        "subjects": subjects,
    }


def weighted_average(results: Sequence[dict]) -> float:
    """Accuracy over several aggregates, weighted by their question counts."""
    total = sum(r["num_questions"] for r in results)
    return 100.0 * sum(r["correct"] for r in results) / total if total else float("nan")


def letter_stats(records: Sequence[Mapping]) -> dict:
    """answer_distribution, majority_baseline, top_letter_share and degenerate of per-question records (keys
    `pred` and `answer`); see the module docstring."""
    pred = Counter(r["pred"] for r in records)
    gold = Counter(r["answer"] for r in records if r.get("answer") is not None)
    n = len(records)
    letters = sorted(set(pred) | set(gold))
    top = max(pred.values(), default=0) / n if n else 0.0
    n_gold = sum(gold.values())
    return {
        "answer_distribution": {"predicted": {k: pred.get(k, 0) for k in letters},
                                "gold": {k: gold.get(k, 0) for k in letters}},
        "majority_baseline": 100.0 * max(gold.values(), default=0) / n_gold if n_gold else float("nan"),
        "top_letter_share": round(top, 6),
        "degenerate": bool(n) and top >= DEGENERATE_SHARE,
    }


def distribution_text(dist: Mapping[str, Mapping[str, int]] | None, which: str = "predicted") -> str:
    """"A 96% B 2% C 1% D 1%": the shares of one side of an answer_distribution ("-" when absent)."""
    if not dist or not dist.get(which):
        return "-"
    counts = dist[which]
    n = sum(counts.values())
    return " ".join(f"{k} {100.0 * v / n:.0f}%" for k, v in counts.items()) if n else "-"
