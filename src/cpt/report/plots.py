"""The report's plots: training loss laid out per vocabulary, and held-out bits per byte.

A training loss in nats per token depends on the vocabulary: after 32,000 -> 69,104 pieces the same text is fewer,
rarer tokens, so the two losses are not comparable. `loss_layout` splits the stages (laid end to end) into
segments of one vocabulary each and marks every change; `plot_loss` draws one panel per segment (own y axis) and,
by tokens, a panel below with the held-out bits per byte at each evaluation point, which is the comparable
measure across the change. The layouts are plain data (tested); the PNGs are drawn from them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

LANG_LABEL = {"zh": "Chinese (zh)", "en": "English (en)"}


def loss_layout(train: Mapping[str, list[dict]], vocab: Mapping[str, int | None], x_key: str) -> dict:
    """Stages end to end (x continues where the previous stage stopped), grouped into segments of one vocabulary.

    Returns {"series": {stage: {"x": [...], "y": [...]}}, "ends": {stage: x at its end},
    "segments": [{"vocab": V, "stages": [...], "x0": .., "x1": ..}],
    "markers": [{"x": .., "from": V0, "to": V1, "label": ...}]}. A stage whose vocabulary is unknown (None) stays
    in the current segment."""
    series, ends, segments, markers = {}, {}, [], []
    offset = 0.0
    for stage, rows in train.items():
        xs = [float(r.get(x_key, r["step"])) + offset for r in rows]
        series[stage] = {"x": xs, "y": [float(r["loss"]) for r in rows]}
        v = vocab.get(stage)
        if not segments or (v is not None and segments[-1]["vocab"] is not None and v != segments[-1]["vocab"]):
            if segments:
                markers.append({"x": offset, "from": segments[-1]["vocab"], "to": v,
                                "label": f"vocabulary {segments[-1]['vocab']:,} -> {v:,}: losses before and after "
                                         f"are not comparable"})
            segments.append({"vocab": v, "stages": [], "x0": offset, "x1": offset})
        elif segments[-1]["vocab"] is None:
            segments[-1]["vocab"] = v
        segments[-1]["stages"].append(stage)
        if xs:
            offset = xs[-1]
        segments[-1]["x1"] = offset
        ends[stage] = offset
    return {"series": series, "ends": ends, "segments": segments, "markers": markers}


def bpb_positions(points: Sequence[str], layout: Mapping) -> dict[str, float]:
    """Where each evaluation point sits on the tokens axis: a stage at its end, `base_model` at 0, `init` at the
    first vocabulary change (the extended model before any training on it). Other points are left out."""
    pos = {}
    for p in points:
        if p in layout["ends"]:
            pos[p] = layout["ends"][p]
        elif p == "base_model":
            pos[p] = 0.0
        elif p == "init" and layout["markers"]:
            pos[p] = layout["markers"][0]["x"]
    return pos


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def plot_loss(layout: Mapping, x_key: str, path: Path, bpb: Mapping | None = None) -> None:
    """One panel per vocabulary segment; by tokens with `bpb` ({point: {lang: bpb}}), a bits-per-byte panel below."""
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    segs = layout["segments"] or [{"vocab": None, "stages": [], "x0": 0.0, "x1": 1.0}]
    pos = bpb_positions(list(bpb or {}), layout) if bpb else {}
    rows = 2 if pos else 1
    fig = plt.figure(figsize=(7 if len(segs) == 1 else 9, 4 if rows == 1 else 6.5))
    grid = fig.add_gridspec(rows, len(segs))
    xlabel = "step" if x_key == "step" else "tokens"
    for i, seg in enumerate(segs):
        ax = fig.add_subplot(grid[0, i])
        for stage in seg["stages"]:
            s = layout["series"][stage]
            ax.plot(s["x"], s["y"], label=stage, linewidth=1)
        for m in layout["markers"]:
            if seg["x0"] <= m["x"] <= seg["x1"]:
                ax.axvline(m["x"], color="#c33", linestyle="--", linewidth=1)
        vocab = f"vocabulary {seg['vocab']:,}" if seg["vocab"] else "vocabulary unknown"
        ax.set_title(vocab if i == 0 else f"{vocab} (changed: not comparable with the left)", fontsize=9)
        ax.set_xlabel(f"{xlabel} (stages end to end)")
        ax.xaxis.set_major_locator(MaxNLocator(5 if len(segs) == 1 else 4))
        if i == 0:
            ax.set_ylabel("training loss (nats/token)")
        if seg["stages"]:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no training metrics", ha="center", va="center", transform=ax.transAxes)
    if pos:
        ax = fig.add_subplot(grid[1, :])
        langs = sorted({lang for p in pos for lang in bpb[p]})
        for lang in langs:
            pts = [p for p in pos if lang in bpb[p]]
            ax.plot([pos[p] for p in pts], [bpb[p][lang] for p in pts], marker="o", label=LANG_LABEL.get(lang, lang))
        for p, x in pos.items():
            ax.annotate(p, (x, ax.get_ylim()[1]), fontsize=7, ha="center", va="top")
        for m in layout["markers"]:
            ax.axvline(m["x"], color="#c33", linestyle="--", linewidth=1)
        ax.set_xlabel("tokens (stages end to end)")
        ax.set_ylabel("held-out bits/byte")
        ax.set_title("held-out bits per byte at each evaluation point (comparable across vocabularies)", fontsize=9)
        ax.legend(fontsize=8)
    _save(plt, fig, path)


def plot_bpb(points: Sequence[str], bpb: Mapping[str, Mapping[str, float]], path: Path) -> None:
    """Held-out bits per byte per language over the evaluation points ({point: {lang: bpb}})."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    pts = [p for p in points if p in bpb]
    langs = sorted({lang for p in pts for lang in bpb[p]})
    for lang in langs:
        ax.plot(range(len(pts)), [bpb[p].get(lang, float("nan")) for p in pts], marker="o",
                label=LANG_LABEL.get(lang, lang))
    ax.set_xticks(range(len(pts)))
    ax.set_xticklabels(pts)
    ax.set_ylabel("bits per byte (held-out)")
    ax.set_title("held-out bits per byte over stages (lower is better)")
    if langs:
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no bits-per-byte results", ha="center", va="center", transform=ax.transAxes)
    _save(plt, fig, path)
