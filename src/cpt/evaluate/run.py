"""One stage's evaluation: every configured benchmark and the held-out bits per byte, written as JSON files.

Layout written into `out_dir` (results/<exp>/evaluate/<stage>/):
  benchmarks.json                 {name: headline numbers} for the report
  <name>.json                     full result of one benchmark (per subject, answer-letter distribution, majority
                                  baseline, degenerate, questions the protocol excluded, prompt statistics,
                                  timing), or why it was skipped / not run (no data path given)
  <name>.predictions.jsonl        one line per question (id, subject, answer, pred, letter logits, ...)
  bpb.json                        bits per byte / perplexity per language and category (bytes covered, digest)
  protocol.json                   the published table to compare with, backend, prompt style (for the report)
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Mapping

import torch

from cpt.core.errors import ConfigError, EvalError
from cpt.core.schema import complete, default
from cpt.evaluate import gating, protocol
from cpt.evaluate.formats import FORMATS, get_format, load_benchmark
from cpt.evaluate.scoring import EvalSettings, evaluate_benchmark

HEADLINE_KEYS = ("accuracy", "macro_accuracy", "num_questions", "correct", "shots", "few_shot_source", "format",
                 "language", "split", "seconds", "questions_per_s", "skipped", "scoring", "prompt_style",
                 "answer_distribution", "majority_baseline", "top_letter_share", "degenerate", "status",
                 "skip_reason", "probe", "excluded", "excluded_total", "combined", "first_token", "backend",
                 "not_run_reason", "no_number")


def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(int(threads))


def _pick(spec: Mapping[str, Any], common: Mapping[str, Any], key: str) -> Any:
    """A benchmark's own value of `key`, else the evaluate section's, else the schema's default."""
    if spec.get(key) is not None:
        return spec[key]
    return common[key] if common.get(key) is not None else default(f"evaluate.{key}")


def settings_from(spec: Mapping[str, Any], common: Mapping[str, Any], key: str) -> EvalSettings:
    fmt = get_format(spec["format"])  # its published few-shot count and pooling (ColossalEval's evaluation)
    new_tokens = spec.get("max_new_tokens") or common.get("max_new_tokens") or (
        protocol.GSM_MAX_NEW_TOKENS if fmt.generative else protocol.MAX_NEW_TOKENS)
    style = str(_pick(spec, common, "prompt_style"))
    if fmt.generative and style == "project":
        style = "colossaleval"  # GSM8K has only the published prompt
    return EvalSettings(
        shots=int(spec.get("shots", fmt.default_shots)),
        max_length=spec.get("max_length", common.get("max_length")),
        max_batch_tokens=int(_pick(spec, common, "max_batch_tokens")),
        max_batch_size=int(_pick(spec, common, "max_batch_size")),
        limit_per_subject=spec.get("limit_per_subject", common.get("limit_per_subject")),
        combined=bool(spec.get("combined", fmt.combined)),
        max_new_tokens=int(new_tokens),
        scoring=str(_pick(spec, common, "scoring")),
        length_normalize=bool(_pick(spec, common, "length_normalize")),
        prompt_style=style,
    )


NOT_RUN = "not run: no data path (evaluate.benchmarks.{name}.path)"


def data_path(name: str, spec: Mapping[str, Any], section: Mapping[str, Any]) -> str | None:
    """Where a benchmark's data is: its own `path`, else <evaluate.data_root>/<name> when a data root is given,
    else None (the benchmark is reported as not run)."""
    if spec.get("path"):
        return str(spec["path"])
    if section.get("data_root"):
        return str(Path(section["data_root"]) / name)
    return None


def harness_formats() -> tuple[str, ...]:
    from cpt.evaluate.lm_eval_backend import FORMATS as HARNESS

    return HARNESS


def not_run_result(name: str, spec: Mapping[str, Any], section: Mapping[str, Any], reason: str | None = None) -> dict:
    fmt = get_format(spec["format"])
    return {"benchmark": name, "format": spec["format"], "status": "not_run",
            "not_run_reason": reason or NOT_RUN.format(name=name),
            "shots": int(spec.get("shots", fmt.default_shots)),
            "prompt_style": str(_pick(spec, section, "prompt_style"))}


def path_problems(section: Mapping[str, Any]) -> list[str]:
    """Every benchmark whose data path is given must load: each problem names the config key (plan time: the
    workflow stops before any job runs). Benchmarks without a path are fine (reported as not run)."""
    problems = []
    for name, spec in ((section or {}).get("benchmarks") or {}).items():
        path = data_path(name, spec, section)
        if path is None or not get_format(spec["format"]).needs_path or path.startswith("source:"):
            continue
        key = (f"evaluate.benchmarks.{name}.path" if spec.get("path")
               else f"evaluate.data_root (its folder {name}/ for evaluate.benchmarks.{name})")
        if not Path(path).exists():
            problems.append(f"{key}: {path} does not exist (the benchmark's {spec['format']} data in its public layout)")
            continue
        try:
            load_benchmark(spec["format"], path, name=name, split=spec.get("split"),
                           four_choice_only=spec.get("four_choice_only"))
        except EvalError as exc:
            problems.append(f"{key}: {path} is not {spec['format']} data: {exc}")
    return problems


def check_data_paths(config: Mapping[str, Any], source: str = "config") -> None:
    problems = path_problems(config.get("evaluate") or {})
    if problems:
        raise ConfigError("invalid config\n  " + "\n  ".join(f"{source}: config key {p}" for p in problems))


def protocol_record(section: Mapping[str, Any]) -> dict:
    """evaluate/<point>/protocol.json: how this point was evaluated, for the report (which published table it is
    compared with, the backend, the prompt style)."""
    return {"published": section.get("published"), "backend": section.get("backend") or default("evaluate.backend"),
            "prompt_style": section.get("prompt_style") or default("evaluate.prompt_style"),
            "data_root": section.get("data_root")}


def check_specs(benchmarks: Mapping[str, Mapping[str, Any]], key: str = "evaluate.benchmarks") -> None:
    for name, spec in benchmarks.items():
        if not isinstance(spec, Mapping) or "format" not in spec:
            raise ConfigError(f"config key {key}.{name}: needs a `format` (one of {', '.join(FORMATS)})")
        if spec["format"] not in FORMATS:
            raise ConfigError(f"config key {key}.{name}.format: {spec['format']!r} is not one of {', '.join(FORMATS)}")


def run_benchmarks(model, tokenizer, benchmarks: Mapping[str, Mapping[str, Any]], out_dir: str | os.PathLike,
                   common: Mapping[str, Any] | None = None, progress: bool = True) -> dict:
    """Evaluate every benchmark (probes before the benchmarks they gate); write <name>.json,
    <name>.predictions.jsonl and benchmarks.json (in config order). A benchmark whose `skip_if_degenerate` probe
    is degenerate is not run: its <name>.json says why (cpt.evaluate.gating)."""
    common = dict(common or {})
    check_specs(benchmarks)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary, results = {}, {}
    for name in gating.run_order(benchmarks):
        spec = benchmarks[name]
        reason = gating.skip_reason(spec, results)
        if reason is not None:
            res = gating.skipped_result(name, spec, reason, results[spec[gating.KEY]])
            (out / f"{name}.json").write_text(json.dumps(res, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            (out / f"{name}.predictions.jsonl").write_text("", encoding="utf-8")
            results[name] = res
            summary[name] = {k: res[k] for k in HEADLINE_KEYS if k in res}
            continue
        path = data_path(name, spec, common)
        backend = common.get("backend") or default("evaluate.backend")
        if (path is None and get_format(spec["format"]).needs_path) or \
                (backend == "lm_eval" and spec["format"] not in harness_formats()):
            res = not_run_result(name, spec, common, None if path is None else
                                 f"not run: backend lm_eval has no harness task for the format {spec['format']} "
                                 f"(evaluate.backend)")
            (out / f"{name}.json").write_text(json.dumps(res, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            (out / f"{name}.predictions.jsonl").write_text("", encoding="utf-8")
            results[name] = res
            summary[name] = {k: res[k] for k in HEADLINE_KEYS if k in res}
            continue
        bench = load_benchmark(spec["format"], path, name=name, split=spec.get("split"),
                               four_choice_only=spec.get("four_choice_only"))
        settings = settings_from(spec, common, name)
        if backend == "lm_eval":
            from cpt.evaluate.lm_eval_backend import evaluate_with_harness

            res = evaluate_with_harness(model, tokenizer, bench, settings, progress=progress)
        else:
            res = evaluate_benchmark(model, tokenizer, bench, settings, progress=progress)
        res["backend"] = backend
        preds = res.pop("predictions", [])
        with open(out / f"{name}.predictions.jsonl", "w", encoding="utf-8") as f:
            for rec in preds:
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        res["files"] = bench.files if len(bench.files) <= 200 else [f"{len(bench.files)} files"]
        (out / f"{name}.json").write_text(json.dumps(res, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        results[name] = res
        summary[name] = {k: res[k] for k in HEADLINE_KEYS if k in res}
    summary = {n: summary[n] for n in benchmarks}
    (out / "benchmarks.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return summary


def run_bpb(model, tokenizer, heldout_dir, out_path, languages=None, *, max_bytes_per_language, max_length=None,
            max_batch_tokens, progress=True) -> dict:
    """cpt.measure.bpb.heldout_bpb (settings: config evaluate.bpb) written to `out_path`."""
    from cpt.measure.bpb import heldout_bpb

    res = heldout_bpb(model, tokenizer, heldout_dir, languages, max_bytes_per_language=max_bytes_per_language,
                      max_length=max_length, max_batch_tokens=max_batch_tokens, progress=progress)
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    Path(out_path).write_text(json.dumps(res, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return res


def evaluate_stage(model_dir, out_dir, section: Mapping[str, Any], heldout_dir=None, languages=None,
                   device: str | None = None, progress: bool = True) -> dict:
    """Everything the `evaluate` section asks for one model directory (used by the workflow and `cpt evaluate`).
    The device is the section's, else `device`, else the schema's default (evaluate.device)."""
    from cpt.core.provenance import write_provenance
    from cpt.evaluate.generate import load_model

    t0 = time.time()
    set_threads(section.get("threads"))
    dev = section.get("device", device)
    model, tok = load_model(model_dir, device=default("evaluate.device") if dev is None else dev)
    out = Path(out_dir)
    summary = run_benchmarks(model, tok, section.get("benchmarks", {}), out, section, progress)
    bpb = None
    if heldout_dir is not None:
        bcfg = complete("evaluate.bpb", section.get("bpb"))
        bpb = run_bpb(model, tok, heldout_dir, out / "bpb.json", languages,
                      max_bytes_per_language=bcfg["max_bytes_per_language"], max_length=bcfg["max_length"],
                      max_batch_tokens=int(bcfg["max_batch_tokens"]), progress=progress)
    inputs = {"model": model_dir}
    if heldout_dir is not None:
        inputs["heldout"] = heldout_dir
    (out / "protocol.json").write_text(json.dumps(protocol_record(section), indent=2, ensure_ascii=False) + "\n",
                                       encoding="utf-8")
    write_provenance(out, "evaluate", dict(section), inputs=inputs, started=t0)
    return {"benchmarks": summary, "bpb": bpb}


# ------------------------------------------------------------------------------------------------ workflow glue
SPECIAL_POINTS = ("base_model", "init")


def evaluation_points(config: Mapping[str, Any]) -> list[str]:
    """The models to evaluate, in report order (config evaluate.points, default base_model, init, every stage)."""
    stages = list(config["train"]["stages"])
    section = config.get("evaluate") or {}
    points = section.get("points")
    if points is None:
        # chronological: the initialised extended model comes right before the first stage trained from it
        # (model.init.from_stage may be a trained stage, so `init` is not necessarily second)
        order = ["base_model"]
        for s in stages:
            if (config["train"]["stages"][s] or {}).get("init_from") == "init" and "init" not in order:
                order.append("init")
            order.append(s)
        if "init" not in order:
            order.insert(1, "init")
        return order
    bad = [p for p in points if p not in SPECIAL_POINTS and p not in stages]
    if bad:
        raise ConfigError(f"config key evaluate.points: {', '.join(map(repr, bad))} is neither base_model, init nor "
                          f"a training stage ({', '.join(stages)})")
    return list(points)


def stage_benchmarks(section: Mapping[str, Any], idioms_dir: str | os.PathLike | None, point: str | None = None) -> dict:
    """The benchmarks of the section at one evaluation point, plus the idiom set (when enabled and built).

    A benchmark with `points: [...]` runs only at those points (e.g. the full MMLU on the last stage only).
    """
    benches = {}
    for name, spec in (section.get("benchmarks") or {}).items():
        spec = dict(spec)
        only = spec.pop("points", None)
        if only is None or point is None or point in only:
            benches[name] = spec
    idioms = complete("evaluate.idioms", section.get("idioms"))
    if idioms_dir is not None and idioms["enabled"]:
        name = idioms["name"]
        if name in benches:
            raise ConfigError(f"config key evaluate.idioms.name: {name!r} is also a key of evaluate.benchmarks")
        benches[name] = {"format": "cmmlu", "path": str(idioms_dir), "shots": int(idioms["shots"])}
    return benches


def evaluate_point(model_dir, out_dir, section: Mapping[str, Any], heldout_dir=None, languages=None,
                   idioms_dir=None, threads: int | None = None, progress: bool = False) -> dict:
    """The workflow's evaluate rule: benchmarks (+ idiom set) and held-out bits per byte of one model."""
    sec = dict(section)
    if not sec.get("threads") and threads:
        sec["threads"] = threads
    sec["benchmarks"] = stage_benchmarks(section, idioms_dir, point=Path(out_dir).name)
    bpb_on = complete("evaluate.bpb", section.get("bpb"))["enabled"]
    return evaluate_stage(model_dir, out_dir, sec, heldout_dir if bpb_on else None, languages, progress=progress)
