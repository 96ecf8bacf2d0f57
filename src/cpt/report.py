"""The experiment report: tables and plots from results/<exp>/..., for `snakemake --report` and for terminals.

Reads (each optional; what is missing is listed in the summary, never an error):
  tokenizer/compression.json          the seed-style tokenizer table (vocab size, tokens/char, avg tokens/sample)
  train/<S>/metrics.jsonl             loss curves per stage, by step and by tokens
  evaluate/<P>/benchmarks.json        accuracy per benchmark at each evaluation point P (stages in order)
  evaluate/<P>/bpb.json               bits per byte per language at each point
  corpus/*/manifest.json, dataset/<S>/manifest.json   the data summary
Writes into the report directory: tokenizer.html, loss_by_step.png, loss_by_tokens.png, bpb.png,
benchmarks.html, datasets.html, summary.md, report.json.
"""

from __future__ import annotations

import html
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import click

from cpt.errors import RecordError
from cpt.records import iter_json_objects
from cpt.report_benchmarks import NOTE as BENCH_NOTE, PUBLISHED, benchmark_rows, distribution_rows

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
    data["train"] = {}
    for s in stages:
        f = train_dir / s / "metrics.jsonl"
        if f.is_file():
            data["train"][s] = read_metrics(f)
        else:
            missing.append(f"train/{s}/metrics.jsonl (no loss curve for stage {s})")

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
        bb = _read_json(eval_dir / p / "bpb.json")
        if bb is None:
            missing.append(f"evaluate/{p}/bpb.json (no bits per byte for {p})")
        else:
            data["bpb"][p] = bb

    manifests = {}
    for name in ("corpus/raw", "corpus/heldout", "corpus/train", "clean"):
        m = _read_json(root / name / "manifest.json")
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
    langs = sorted({lang for p in data["bpb"].values() for lang in p.get("languages", {})})
    header = ["model"] + [f"{lang} bits/byte" for lang in langs] + [f"{lang} ppl" for lang in langs]
    rows = []
    for p in data["points"]:
        if p in data["bpb"]:
            L = data["bpb"][p]["languages"]
            rows.append([p] + [_fmt(L.get(lang, {}).get("bits_per_byte"), 4) for lang in langs]
                        + [_fmt(L.get(lang, {}).get("perplexity"), 2) for lang in langs])
    return header, rows


def dataset_rows(data: Mapping) -> tuple[list[str], list[list[str]]]:
    header = ["artifact", "summary"]
    rows = []
    for name, m in data["manifests"].items():
        keys = ("num_sequences", "num_tokens", "max_length", "records", "num_records", "categories", "skipped",
                "buckets", "tokens", "characters")
        parts = []
        for k in keys:
            if k in m:
                v = m[k]
                if isinstance(v, list):
                    v = f"{len(v)}" if k == "buckets" else ", ".join(map(str, v[:8]))
                elif isinstance(v, dict):
                    v = ", ".join(f"{a}: {_fmt(b) if not isinstance(b, dict) else '…'}" for a, b in list(v.items())[:8])
                parts.append(f"{k}: {_fmt(v) if not isinstance(v, str) else v}")
        rows.append([name, "; ".join(parts) or ", ".join(sorted(m)[:10])])
    return header, rows


def to_markdown(header, rows) -> str:
    if not rows:
        return "_(no data)_\n"
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def to_html(title: str, header, rows, note: str = "") -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            "<style>table{border-collapse:collapse}td,th{border:1px solid #999;padding:3px 8px;text-align:right}"
            "td:first-child{text-align:left}</style></head><body>"
            f"<h3>{html.escape(title)}</h3><table><tr>{th}</tr>{body}</table>"
            f"<p>{html.escape(note)}</p></body></html>\n")


# ------------------------------------------------------------------------------------------------ plots
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_loss(train: Mapping[str, list[dict]], x_key: str, path: Path) -> None:
    """Loss per stage; stages are laid end to end (x continues where the previous stage stopped)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    offset = 0.0
    for stage, rows in train.items():
        xs = [float(r.get(x_key, r["step"])) + offset for r in rows]
        ax.plot(xs, [r["loss"] for r in rows], label=stage, linewidth=1)
        if xs:
            ax.axvline(xs[-1], color="#bbb", linewidth=0.5)
            offset = xs[-1]
    ax.set_xlabel("step" if x_key == "step" else "tokens")
    ax.set_ylabel("training loss")
    ax.set_title(f"training loss by {'step' if x_key == 'step' else 'tokens'} (stages end to end)")
    _save_plot(plt, fig, ax, bool(train), "no training metrics", path)


def _save_plot(plt, fig, ax, has_data: bool, empty_text: str, path: Path) -> None:
    """Legend (or `empty_text` in the middle when nothing was plotted), then write the PNG (no timestamp)."""
    if has_data:
        ax.legend()
    else:
        ax.text(0.5, 0.5, empty_text, ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def plot_bpb(data: Mapping, path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    pts = [p for p in data["points"] if p in data["bpb"]]
    langs = sorted({lang for p in pts for lang in data["bpb"][p].get("languages", {})})
    for lang in langs:
        ys = [data["bpb"][p]["languages"].get(lang, {}).get("bits_per_byte", float("nan")) for p in pts]
        ax.plot(range(len(pts)), ys, marker="o", label={"zh": "Chinese (zh)", "en": "English (en)"}.get(lang, lang))
    ax.set_xticks(range(len(pts)))
    ax.set_xticklabels(pts)
    ax.set_ylabel("bits per byte (held-out)")
    ax.set_title("held-out bits per byte over stages (lower is better)")
    _save_plot(plt, fig, ax, bool(langs), "no bits-per-byte results", path)


# ------------------------------------------------------------------------------------------------ report
OUTPUTS = ("tokenizer.html", "loss_by_step.png", "loss_by_tokens.png", "bpb.png", "benchmarks.html", "datasets.html",
           "summary.md", "report.json")


def build_report(root: str | os.PathLike, out_dir: str | os.PathLike, stages: Sequence[str] | None = None,
                 points: Sequence[str] | None = None, experiment: str | None = None) -> dict:
    """Write every report file into out_dir; returns the collected data (with `missing`)."""
    t0 = time.time()
    data = collect(root, stages, points)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    exp = experiment or Path(root).name
    th, tr = tokenizer_rows(data["compression"])
    bh, br = benchmark_rows(data)
    xh, xr = distribution_rows(data)
    ph, pr = bpb_rows(data)
    dh, dr = dataset_rows(data)
    (out / "tokenizer.html").write_text(to_html("Tokenizer compression", th, tr,
                                                "tokens per character on held-out text; lower = better compression"),
                                        encoding="utf-8")
    bench_html = to_html(
        "Benchmark accuracy (%) per stage, next to published 7B numbers", bh, br,
        "Scoring and prompt style per benchmark from config (evaluate.scoring: first_token = ColossalEval's method). "
        "The tiny demo models are not comparable to 7B models; the published rows are for orientation. " + BENCH_NOTE)
    dist_html = to_html("Answer-letter distributions", xh, xr)
    body = dist_html[dist_html.index("<h3>"):dist_html.index("</body>")]
    (out / "benchmarks.html").write_text(bench_html.replace("</body>", body + "</body>"), encoding="utf-8")
    (out / "datasets.html").write_text(to_html("Data manifests", dh, dr), encoding="utf-8")
    plot_loss(data["train"], "step", out / "loss_by_step.png")
    plot_loss(data["train"], "tokens", out / "loss_by_tokens.png")
    plot_bpb(data, out / "bpb.png")

    lines = [f"# Experiment report: {exp}", ""]
    lines += ["## Tokenizer", "", to_markdown(th, tr)]
    lines += ["## Training", ""]
    for s, rows in data["train"].items():
        if rows:
            last = rows[-1]
            lines.append(f"- {s}: {len(rows)} logged steps, final loss {last['loss']:.4f} at step {last['step']}"
                         + (f", {int(last['tokens']):,} tokens" if "tokens" in last else ""))
    if not data["train"]:
        lines.append("_(no training metrics)_")
    lines += ["", "## Bits per byte (held-out)", "", to_markdown(ph, pr)]
    lines += ["## Benchmarks (accuracy %)", "", to_markdown(bh, br), BENCH_NOTE, ""]
    lines += ["### Answer-letter distributions", "", to_markdown(xh, xr)]
    lines += ["## Data", "", to_markdown(dh, dr)]
    if data["missing"]:
        lines += ["## Not available", ""] + [f"- {m}" for m in data["missing"]] + [""]
    (out / "summary.md").write_text("\n".join(lines), encoding="utf-8")
    report = {k: data[k] for k in ("points", "missing", "benchmarks")}
    report["bpb"] = {p: v.get("languages") for p, v in data["bpb"].items()}
    report["train_final_loss"] = {s: (r[-1]["loss"] if r else None) for s, r in data["train"].items()}
    report["published"] = PUBLISHED
    report["wall_seconds"] = round(time.time() - t0, 3)
    (out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n",
                                     encoding="utf-8")
    return data


@click.command("report")
@click.option("--results", "root", required=True, type=click.Path(exists=True, file_okay=False),
              help="results/<experiment> directory.")
@click.option("--out", "out_dir", help="Report directory (default: <results>/report).")
@click.option("--stage", "stages", multiple=True, help="Training stages in order (default: train/* sorted).")
@click.option("--point", "points", multiple=True, help="Evaluation points in order (default: evaluate/* sorted).")
def cli_report(root, out_dir, stages, points):
    """Tables, plots and summary.md of one experiment (missing inputs are listed, not fatal)."""
    out = out_dir or str(Path(root) / "report")
    data = build_report(root, out, list(stages) or None, list(points) or None)
    click.echo(Path(out, "summary.md").read_text(encoding="utf-8"))
    if data["missing"]:
        click.echo(f"({len(data['missing'])} inputs missing; see summary.md)", err=True)
