"""The experiment report: tables and plots from results/<exp>/..., for `snakemake --report` and for terminals.

Reads (each optional; what is missing is listed in the summary, never an error):
  tokenizer/compression.json          the seed-style tokenizer table (vocab size, tokens/char, avg tokens/sample)
  train/<S>/metrics.jsonl             loss curves per stage, by step and by tokens (cpt.report.plots: one panel per
                                      vocabulary); with train/<S>/run.json the cost table (cpt.report.cost)
  evaluate/<P>/benchmarks.json        accuracy per benchmark at each evaluation point P (stages in order)
  evaluate/<P>/bpb.json               bits per byte per language at each point
  corpus/*/manifest.json, clean/report.json, dataset/<S>/manifest.json   the Data tables (cpt.report.data)
Writes into the report directory: tokenizer.html, loss_by_step.png, loss_by_tokens.png, bpb.png,
benchmarks.html, datasets.html, cost.html, summary.md, report.json, bpb.csv and loss.csv (cpt.report.series).
"""

from __future__ import annotations

import html
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from cpt.artifacts.records import iter_json_objects
from cpt.report.series import BPB_CSV, LOSS_CSV, write_series
from cpt.artifacts.stagedir import METRICS, RUN, StageDir
from cpt.core.errors import RecordError
from cpt.report import cost
from cpt.report import data as report_data
from cpt.report import plots as report_plots
from cpt.report.benchmarks import NOTE as BENCH_NOTE
from cpt.report.benchmarks import (
    DIFFERENCES,
    PUBLISHED,
    benchmark_rows,
    comparison_rows,
    distribution_rows,
    published_table,
)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as exc:
        raise RecordError(path, exc.lineno, "invalid_json", f"invalid_json: invalid JSON ({exc.msg})") from None


def read_metrics(path: Path) -> list[dict]:
    return [rec for _, rec in iter_json_objects(path) if "step" in rec and "loss" in rec]


# ------------------------------------------------------------------------------------------------ collection
def collect(root: str | os.PathLike, stages: Sequence[str] | None = None,
            points: Sequence[str] | None = None) -> dict:
    """Everything the report shows, from results/<exp>; `missing` lists what was not there."""
    root = Path(root)
    missing: list[str] = []
    data: dict[str, Any] = {"root": str(root), "missing": missing}
    comp = _read_json(root / "tokenizer" / "compression.json")
    if comp is None:
        missing.append("tokenizer/compression.json (tokenizer table)")
    data["compression"] = comp

    train_dir = root / "train"
    if stages is None:
        stages = sorted(p.name for p in train_dir.iterdir() if p.is_dir()) if train_dir.is_dir() else []
    data["train"], data["runs"] = {}, {}
    for s in stages:
        sd = StageDir(train_dir / s)
        if sd.record(METRICS).is_file():
            data["train"][s] = read_metrics(sd.record(METRICS))
        else:
            missing.append(f"train/{s}/{METRICS} (no loss curve for stage {s})")
        data["runs"][s] = _read_json(sd.record(RUN))

    eval_dir = root / "evaluate"
    if points is None:
        points = sorted(p.name for p in eval_dir.iterdir() if p.is_dir()) if eval_dir.is_dir() else []
    data["points"] = list(points)
    data["benchmarks"], data["bpb"] = {}, {}
    for p in points:
        b = _read_json(eval_dir / p / "benchmarks.json")
        if b is None:
            missing.append(f"evaluate/{p}/benchmarks.json (no benchmark scores for {p})")
        else:
            data["benchmarks"][p] = b
        proto = _read_json(eval_dir / p / "protocol.json")
        if proto and proto.get("published") and not data.get("published"):
            data["published"] = proto["published"]
        bb = _read_json(eval_dir / p / "bpb.json")
        if bb is None:
            missing.append(f"evaluate/{p}/bpb.json (no bits per byte for {p})")
        else:
            data["bpb"][p] = bb

    data["init"] = _read_json(root / "model" / "init" / "report.json")
    data["generations"] = {}
    for p in points:
        f = root / "generations" / p / "generations.jsonl"
        if f.is_file():
            data["generations"][p] = [rec for _, rec in iter_json_objects(f)]

    manifests = {}
    for name in ("corpus/raw", "corpus/heldout", "corpus/train", "clean"):
        m = _read_json(root / name / ("report.json" if name == "clean" else "manifest.json"))
        if m is not None:
            manifests[name] = m
    for s in stages:
        m = _read_json(root / "dataset" / s / "manifest.json")
        if m is not None:
            manifests[f"dataset/{s}"] = m
        else:
            missing.append(f"dataset/{s}/manifest.json")
    if not any(k.startswith("corpus") for k in manifests):
        missing.append("corpus/*/manifest.json (corpus summary)")
    data["manifests"] = manifests
    data["stages"] = list(stages)
    return data


# ------------------------------------------------------------------------------------------------ tables
def _fmt(x, digits=2) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        if math.isnan(x):
            return "-"
        return f"{x:.{digits}f}"
    if isinstance(x, int):
        return f"{x:,}"
    return str(x)


def tokenizer_rows(comp: Mapping | None) -> tuple[list[str], list[list[str]]]:
    header = ["tokenizer", "language", "vocab size", "samples", "tokens/char", "avg tokens/sample"]
    rows = []
    if comp and isinstance(comp.get("rows"), list):
        for r in comp["rows"]:
            rows.append([str(r.get("tokenizer")), str(r.get("language")), _fmt(r.get("vocab_size")),
                         _fmt(r.get("samples")), _fmt(r.get("tokens_per_char"), 3),
                         _fmt(r.get("avg_tokens_per_sample"), 3)])
        ref = comp.get("reference_published")
        if ref:
            rows.append(["published LLaMA-2", "zh", "32,000", "-", _fmt(ref.get("base_tokens_per_char"), 3),
                         _fmt(ref.get("base_avg_tokens"), 3)])
            rows.append(["published Colossal-LLaMA-2", "zh", "69,104", "-",
                         _fmt(ref.get("extended_tokens_per_char"), 3), _fmt(ref.get("extended_avg_tokens"), 3)])
    return header, rows


def bpb_rows(data: Mapping) -> tuple[list[str], list[list[str]]]:
    """Bits per byte per point and language, with the bytes each figure covers and its tokens."""
    langs = sorted({lang for p in data["bpb"].values() for lang in p.get("languages", {})})
    header = (["model"] + [f"{lang} bits/byte" for lang in langs] + [f"{lang} bytes" for lang in langs]
              + [f"{lang} tokens" for lang in langs] + [f"{lang} ppl" for lang in langs])
    rows = []
    for p in data["points"]:
        if p in data["bpb"]:
            L = data["bpb"][p]["languages"]
            rows.append([p] + [_fmt(L.get(lang, {}).get("bits_per_byte"), 4) for lang in langs]
                        + [_int(L.get(lang, {}).get("bytes")) for lang in langs]
                        + [_int(L.get(lang, {}).get("tokens")) for lang in langs]
                        + [_fmt(L.get(lang, {}).get("perplexity"), 2) for lang in langs])
    return header, rows


def _int(x) -> str:
    return "-" if x is None else f"{int(x):,}"


def bpb_identity_note(data: Mapping) -> str:
    """Whether every point's bits per byte covers the same bytes (per language, from the spans' digests)."""
    langs = sorted({lang for p in data["bpb"].values() for lang in p.get("languages", {})})
    parts = []
    for lang in langs:
        digests = {p: (data["bpb"][p]["languages"].get(lang) or {}).get("text_sha256")
                   for p in data["points"] if p in data["bpb"]}
        got = {d for d in digests.values() if d}
        nbytes = {(data["bpb"][p]["languages"].get(lang) or {}).get("bytes") for p in digests}
        if len(got) == 1 and len(got) == len({d for d in digests.values()}):
            parts.append(f"{lang}: the same {next(iter(nbytes)):,} bytes at every point (sha256 "
                         f"{next(iter(got))[:12]})")
        elif got:
            parts.append(f"{lang}: DIFFERENT text across points ({', '.join(f'{p}: {d[:12] if d else None}' for p, d in digests.items())}): "
                         f"these figures are not comparable")
        else:
            parts.append(f"{lang}: no span digest in bpb.json (scored by an older version: bytes may differ)")
    return "Scored text: " + "; ".join(parts) + "." if parts else ""


def retention_rows(data: Mapping) -> tuple[list[str], list[list[str]]]:
    """Bits per byte of every point relative to the first point's (the base model): +x% = worse than the base.
    English at the last point against the base is what "English retention" means here."""
    points = [p for p in data["points"] if p in data["bpb"]]
    if len(points) < 2:
        return [], []
    ref = data["bpb"][points[0]]["languages"]
    langs = sorted({lang for p in points for lang in data["bpb"][p].get("languages", {})})
    header = ["model"] + [f"{lang} vs {points[0]}" for lang in langs]
    rows = []
    for p in points[1:]:
        L = data["bpb"][p]["languages"]
        cells = []
        for lang in langs:
            a, b = (L.get(lang) or {}).get("bits_per_byte"), (ref.get(lang) or {}).get("bits_per_byte")
            cells.append("-" if a is None or not b else f"{100.0 * (a / b - 1.0):+.1f}%")
        rows.append([p] + cells)
    return header, rows


def init_rows(init: Mapping | None) -> tuple[list[str], list[list[str]]]:
    """model/init/report.json's comparison: step-0 bits per byte per language and English KL per method."""
    comp = (init or {}).get("comparison") or []
    if not comp:
        return [], []
    before = {lang: ((init.get("loss") or {}).get(lang) or {}).get("before", {}).get("bits_per_byte")
              for lang in ("en", "zh")}
    header = ["method", "en bits/byte", "zh bits/byte", "English KL from the source (nats/position)"]
    rows = [["(source model, old vocabulary)", _fmt(before["en"], 4), _fmt(before["zh"], 4), "0"]]
    for r in comp:
        mark = " (used)" if r["method"] == init.get("method") else ""
        rows.append([r["method"] + mark, _fmt(r.get("en_bits_per_byte"), 4), _fmt(r.get("zh_bits_per_byte"), 4),
                     _fmt(r.get("en_kl_nats"), 5)])
    return header, rows


def generation_lines(data: Mapping, width: int = 160) -> list[str]:
    """Markdown: each prompt (and form: plain / chat) with every point's greedy continuation, one line each."""
    gens = data.get("generations") or {}
    if not gens:
        return []
    keys = []
    for recs in gens.values():
        for r in recs:
            k = (r["index"], r["form"])
            if k not in keys:
                keys.append(k)
    by_key = {p: {(r["index"], r["form"]): r for r in recs} for p, recs in gens.items()}
    lines = []
    for k in sorted(keys):
        first = next(by_key[p][k] for p in gens if k in by_key[p])
        lines += [f"**{first['lang']}** ({k[1]}): `{first['prompt']}`", ""]
        for p in data["points"]:
            if p in by_key and k in by_key[p]:
                text = " ".join(by_key[p][k]["output"].split())  # one line: whitespace runs shown as one space
                if len(text) > width:
                    text = text[:width] + " ..."
                lines.append(f"- {p}: {text or '_(only whitespace)_'}")
        lines.append("")
    return lines


def to_markdown(header, rows) -> str:
    if not rows:
        return "_(no data)_\n"
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def to_html(title: str, header, rows, note: str = "", more: Sequence[tuple] = ()) -> str:
    """One HTML page: the table (header, rows), then each (subtitle, header, rows) of `more`, then the note."""
    def table(header, rows):
        th = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
        return f"<table><tr>{th}</tr>{body}</table>"

    extra = "".join(f"<h4>{html.escape(t)}</h4>{table(h, r)}" for t, h, r in more)
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            "<style>table{border-collapse:collapse}td,th{border:1px solid #999;padding:3px 8px;text-align:right}"
            "td:first-child{text-align:left}</style></head><body>"
            f"<h3>{html.escape(title)}</h3>{table(header, rows)}{extra}"
            f"<p>{html.escape(note)}</p></body></html>\n")


# ------------------------------------------------------------------------------------------------ report
OUTPUTS = ("tokenizer.html", "loss_by_step.png", "loss_by_tokens.png", "bpb.png", "benchmarks.html", "datasets.html",
           "cost.html", "summary.md", "report.json", BPB_CSV, LOSS_CSV)


def build_report(root: str | os.PathLike, out_dir: str | os.PathLike, stages: Sequence[str] | None = None,
                 points: Sequence[str] | None = None, experiment: str | None = None, section: Mapping | None = None,
                 devices: int | None = None, assume_tokens_per_s: float | None = None,
                 gpu_hour_usd: float | None = None) -> dict:
    """Write every report file into out_dir; returns the collected data (with `missing`). `section`: the
    config's `report` section (its `cost` settings); `devices`: the training rule's devices (cost projection);
    the last two override report.cost (cpt report options)."""
    t0 = time.time()
    data = collect(root, stages, points)
    data["cost"] = cost.run_cost(data["train"], data["runs"], (section or {}).get("cost"), devices,
                                 assume_tokens_per_s, gpu_hour_usd)
    ch, cr = cost.cost_rows(data["cost"])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    exp = experiment or Path(root).name
    th, tr = tokenizer_rows(data["compression"])
    bh, br = benchmark_rows(data)
    xh, xr = distribution_rows(data)
    ph, pr = bpb_rows(data)
    data_tables = [("Corpus by category", *report_data.corpus_rows(data["manifests"])),
                   ("Tokens per stage by category", *report_data.stage_rows(data["manifests"], data["stages"])),
                   ("Datasets per stage", *report_data.dataset_rows(data["manifests"], data["stages"]))]
    (out / "tokenizer.html").write_text(to_html("Tokenizer compression", th, tr,
                                                "tokens per character on held-out text; lower = better compression"),
                                        encoding="utf-8")
    table = published_table(data)
    title = ("Benchmark accuracy (%) per evaluation point" +
             (f", next to the published {table['title']}" if table else " (no published table: evaluate.published)"))
    kh, kr = comparison_rows(data)
    more = [("Answer-letter distributions", xh, xr)]
    if kr:
        more.insert(0, ("This run next to the published values, benchmark by benchmark", kh, kr))
        more.insert(1, ("Where this project's evaluation differs from ColossalEval's", ["difference"],
                        [[d] for d in DIFFERENCES]))
    (out / "benchmarks.html").write_text(to_html(
        title, bh, br, "Each column header names the protocol it was scored with (shots, metric, prompt style, "
        "split). " + BENCH_NOTE, more=more), encoding="utf-8")
    cost_note = (f"device-hours = tokens / (tokens/s per device) / 3600; cost at ${data['cost']['gpu_hour_usd']:,.2f}"
                 " per device-hour (report.cost.gpu_hour_usd); rate: measured (median tokens_per_s of metrics.jsonl"
                 " / world size of run.json) or assumed (report.cost.assume_tokens_per_s, --assume-tokens-per-s).")
    (out / "cost.html").write_text(to_html("Run cost", ch, cr, cost_note), encoding="utf-8")
    (out / "datasets.html").write_text(to_html(f"Data: {data_tables[0][0]}", *data_tables[0][1:], more=data_tables[1:],
                                               note="From corpus/*/manifest.json, clean/report.json and "
                                                    "dataset/<stage>/manifest.json; tokens with the stage's "
                                                    "tokenizer, before packing."), encoding="utf-8")
    vocab = {s: (data["manifests"].get(f"dataset/{s}") or {}).get("vocab_size") for s in data["train"]}
    bpb = {p: {lang: v["bits_per_byte"] for lang, v in (data["bpb"][p].get("languages") or {}).items()
               if v.get("bits_per_byte") is not None} for p in data["points"] if p in data["bpb"]}
    layouts = {x: report_plots.loss_layout(data["train"], vocab, x) for x in ("step", "tokens")}
    report_plots.plot_loss(layouts["step"], "step", out / "loss_by_step.png")
    report_plots.plot_loss(layouts["tokens"], "tokens", out / "loss_by_tokens.png", bpb)
    report_plots.plot_bpb(data["points"], bpb, out / "bpb.png")

    lines = [f"# Experiment report: {exp}", ""]
    lines += ["## Tokenizer", "", to_markdown(th, tr)]
    ih, ir = init_rows(data["init"])
    if ir:
        lines += ["## Initialisation of the new embedding rows (step 0, held-out text)", "", to_markdown(ih, ir)]
    lines += ["## Training", ""]
    for s, rows in data["train"].items():
        if rows:
            last = rows[-1]
            lines.append(f"- {s}: {len(rows)} logged steps, final loss {last['loss']:.4f} at step {last['step']}"
                         + (f", {int(last['tokens']):,} tokens" if "tokens" in last else "")
                         + (f" (vocabulary {vocab[s]:,})" if vocab.get(s) else ""))
    for m in layouts["tokens"]["markers"]:
        lines.append(f"- at {int(m['x']):,} tokens the {m['label']} (loss_by_*.png: separate panels; held-out bits "
                     f"per byte below)")
    if not data["train"]:
        lines.append("_(no training metrics)_")
    lines += ["", "## Cost", "", to_markdown(ch, cr), cost_note, ""]
    lines += ["## Bits per byte (held-out)", "", to_markdown(ph, pr), bpb_identity_note(data), ""]
    rh, rr = retention_rows(data)
    if rr:
        lines += ["Change in bits per byte against the first point (English at the last point = English "
                  "retention; + is worse):", "", to_markdown(rh, rr)]
    gl = generation_lines(data)
    if gl:
        lines += ["## Generations (greedy, evaluate.generate)", ""] + gl
    lines += ["## Benchmarks (accuracy %)", "", to_markdown(bh, br), BENCH_NOTE, ""]
    if kr:
        lines += [f"### Next to the published {table['title']}", "", to_markdown(kh, kr),
                  "Where this project's evaluation differs from ColossalEval's:", ""]
        lines += [f"- {d}" for d in DIFFERENCES] + [""]
    lines += ["### Answer-letter distributions", "", to_markdown(xh, xr)]
    lines += ["## Data", ""]
    for title, h, r in data_tables:
        lines += [f"### {title}", "", to_markdown(h, r)]
    if data["missing"]:
        lines += ["## Not available", ""] + [f"- {m}" for m in data["missing"]] + [""]
    (out / "summary.md").write_text("\n".join(lines), encoding="utf-8")
    report = {k: data[k] for k in ("points", "missing", "benchmarks")}
    report["bpb"] = {p: v.get("languages") for p, v in data["bpb"].items()}
    report["train_final_loss"] = {s: (r[-1]["loss"] if r else None) for s, r in data["train"].items()}
    report["loss_segments"] = {x: {"segments": v["segments"], "vocabulary_changes": v["markers"]}
                               for x, v in layouts.items()}
    report["bpb_vs_first_point"] = {r[0]: dict(zip(rh[1:], r[1:])) for r in rr}
    report["generations"] = data["generations"]
    report["init_comparison"] = (data["init"] or {}).get("comparison")
    report["published"] = {"table": data.get("published"), "values": PUBLISHED.get(data.get("published") or "")}
    report["cost"] = data["cost"]
    report["wall_seconds"] = round(time.time() - t0, 3)
    (out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n",
                                     encoding="utf-8")
    write_series(out, data)
    return data
