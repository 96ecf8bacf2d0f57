"""`skip_if_degenerate`: a benchmark that runs only when a smaller probe benchmark says the model can use it.

A model that answers one letter to (nearly) every question scores the majority-letter share whatever it knows;
running the full 14,042-question MMLU on it spends minutes to learn nothing. A benchmark with
`skip_if_degenerate: <probe>` is run after its probe at the same evaluation point; when the probe's result is
degenerate (cpt.evaluate.answer_stats: one letter >= 90% of its answers), the benchmark is not run and its result
file says so (`status: skipped`, the reason, the probe's numbers), so the skip is counted and shown in the report,
never silent.
"""

from __future__ import annotations

from typing import Any, Mapping

from cpt.core.errors import ConfigError

KEY = "skip_if_degenerate"


def probe_problems(benchmarks: Mapping[str, Mapping[str, Any]], prefix: str = "evaluate.benchmarks") -> list[str]:
    """Config problems of every `skip_if_degenerate`: the probe must be another benchmark of the section, not
    itself gated, and evaluated at every point the gated benchmark is (its `points` a superset)."""
    problems = []
    for name, spec in benchmarks.items():
        probe = spec.get(KEY)
        if probe is None:
            continue
        key = f"{prefix}.{name}.{KEY}"
        if probe == name or probe not in benchmarks:
            others = ", ".join(n for n in benchmarks if n != name) or "none"
            problems.append(f"{key}: {probe!r} is not another benchmark of this section (others: {others})")
            continue
        if benchmarks[probe].get(KEY) is not None:
            problems.append(f"{key}: the probe {probe!r} is itself gated by {KEY}; a probe must always run")
            continue
        mine, theirs = spec.get("points"), benchmarks[probe].get("points")
        if theirs is not None and (mine is None or not set(mine) <= set(theirs)):
            problems.append(f"{key}: the probe {probe!r} runs only at points {theirs}, but {name!r} runs at "
                            f"{'every point' if mine is None else mine}; give the probe those points too")
    return problems


def run_order(benchmarks: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Benchmark names with every probe before the benchmarks it gates (otherwise in config order). Raises
    ConfigError when a probe is not among `benchmarks` (e.g. not evaluated at this point)."""
    problems = probe_problems(benchmarks)
    if problems:
        raise ConfigError("invalid config\n  config key " + "\n  config key ".join(problems))
    gated = [n for n, s in benchmarks.items() if s.get(KEY) is not None]
    return [n for n in benchmarks if n not in gated] + gated


def skip_reason(spec: Mapping[str, Any], results: Mapping[str, Mapping[str, Any]]) -> str | None:
    """Why a gated benchmark is skipped (its probe's result is degenerate), or None to run it."""
    probe = spec.get(KEY)
    if probe is None:
        return None
    res = results[probe]
    if not res.get("degenerate"):
        return None
    share = res.get("top_letter_share", 0.0)
    top = max(res["answer_distribution"]["predicted"].items(), key=lambda kv: kv[1])[0]
    return (f"probe {probe!r} is degenerate: {100 * share:.1f}% of its {res['num_questions']} answers are "
            f"{top!r} (accuracy {res['accuracy']:.2f}%, majority-letter baseline {res['majority_baseline']:.2f}%)")


def skipped_result(name: str, spec: Mapping[str, Any], reason: str, probe_result: Mapping[str, Any]) -> dict:
    """The result file of a skipped benchmark: what it would have been, why not, and the probe's numbers."""
    return {
        "benchmark": name, "format": spec["format"], "status": "skipped", "skip_reason": reason,
        "probe": spec[KEY], "accuracy": None, "num_questions": 0, "degenerate": None,
        "probe_result": {k: probe_result.get(k) for k in ("accuracy", "num_questions", "majority_baseline",
                                                          "top_letter_share", "answer_distribution")},
    }
