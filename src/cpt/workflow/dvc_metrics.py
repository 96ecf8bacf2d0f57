"""Top-level `metrics:` and `plots:` of a generated dvc.yaml, so `dvc metrics show/diff` and `dvc plots show/diff`
work across commits: the report's numbers (report/report.json: bits per byte and benchmark scores per point, final
loss per stage, cost), each evaluation point's own bpb.json and benchmarks.json, and the report's curves
(report/bpb.csv: bits per byte over the points; report/loss.csv: loss over all training steps; cpt.report.series).

They are files inside the stages' `outs` (which DVC caches and versions); top-level metrics/plots only tell DVC
which of them to read, so nothing is declared twice."""

from __future__ import annotations

from typing import Sequence

from cpt.report.series import BPB_CSV, LOSS_CSV


def metrics_and_plots(groups: Sequence) -> dict:
    """{"metrics": [...], "plots": [...]} for the groups of cpt.workflow.dvc (empty when there is no report)."""
    by_name = {g.name: g for g in groups}
    report = by_name.get("report")
    if report is None:
        return {}
    report_dir = report.outs[0]
    metrics = [f"{report_dir}/report.json"]
    evaluate = by_name.get("evaluate")
    points = [t for t in (evaluate.targets if evaluate else []) if not t.rstrip("/").split("/")[-1].startswith("_")]
    for p in points:
        metrics += [f"{p}/bpb.json", f"{p}/benchmarks.json"]
    langs = ["zh", "en"]  # the report writes one column per language it found; these two are the recipe's
    plots = [
        {"bits_per_byte": {"template": "linear", "x": "point_index", "y": {f"{report_dir}/{BPB_CSV}": langs},
                           "title": "bits per byte at each evaluation point (stages in order)",
                           "x_label": "evaluation point", "y_label": "bits per byte"}},
        {"loss": {"template": "linear", "x": "global_step", "y": {f"{report_dir}/{LOSS_CSV}": "loss"},
                  "title": "training loss, all stages in order", "x_label": "step", "y_label": "loss"}},
    ]
    return {"metrics": metrics, "plots": plots}
