"""The report box's verb: `cpt report`."""

from __future__ import annotations

from pathlib import Path

import click

from cpt.report import cost
from cpt.report.build import build_report


@click.command("report")
@click.option("--results", "root", required=True, type=click.Path(exists=True, file_okay=False),
              help="results/<experiment> directory.")
@click.option("--out", "out_dir", help="Report directory (default: <results>/report).")
@click.option("--stage", "stages", multiple=True, help="Training stages in order (default: train/* sorted).")
@click.option("--point", "points", multiple=True, help="Evaluation points in order (default: evaluate/* sorted).")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
              help="Experiment config: its report.cost settings and training resources (devices) for the cost table.")
@click.option("--assume-tokens-per-s", type=float,
              help="Tokens/s per device where a stage has no measured rate, and for the projection "
                   "(overrides report.cost.assume_tokens_per_s).")
@click.option("--gpu-hour-usd", type=float, help="Price of one device-hour (overrides report.cost.gpu_hour_usd).")
def cli_report(root, out_dir, stages, points, config_file, assume_tokens_per_s, gpu_hour_usd):
    """Tables, plots and summary.md of one experiment (missing inputs are listed, not fatal)."""
    out = out_dir or str(Path(root) / "report")
    section, devices = None, None
    if config_file:
        from cpt.core.config import load

        cfg = load(config_file)
        section, devices = cfg["report"], cost.train_devices(cfg.get("resources"))
    data = build_report(root, out, list(stages) or None, list(points) or None, section=section, devices=devices,
                        assume_tokens_per_s=assume_tokens_per_s, gpu_hour_usd=gpu_hour_usd)
    click.echo(Path(out, "summary.md").read_text(encoding="utf-8"))
    if data["missing"]:
        click.echo(f"({len(data['missing'])} inputs missing; see summary.md)", err=True)


@click.command("model-card")
@click.option("--final", "final", required=True, type=click.Path(exists=True, file_okay=False),
              help="A sealed final/ directory (results/<experiment>/train/<stage>/final).")
@click.option("--report", "report_json", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The experiment's report.json (results/<experiment>/report/report.json).")
@click.option("--stage", help="The evaluation point of this checkpoint (default: the card's stage tag).")
def cli_model_card(final, report_json, stage):
    """Rewrite final/README.md with this checkpoint's bits per byte, benchmark scores (with protocol) and cost
    (final/ then differs from what dvc.lock recorded for it until `dvc commit`)."""
    from cpt.report.model_card import refresh_model_card

    click.echo(str(refresh_model_card(final, report_json, stage)))
