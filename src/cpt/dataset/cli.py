"""`cpt prepare-pretrain` and `cpt prepare-sft`: the reference's prepare_pretrain_dataset.py arguments over
cpt.dataset.build.prepare_stage."""

from __future__ import annotations

import json

import click

from cpt.cli import parse_pairs
from cpt.dataset.build import prepare_stage
from cpt.errors import ConfigError
from cpt.packing import BAD_RECORD_MODES, OVERLONG_MODES


def _common_options(f):
    opts = [
        click.option("--data_input_dirs", required=True,
                     help="Comma-separated jsonl directories (every *.jsonl below) or files."),
        click.option("--tokenizer_dir", required=True, type=click.Path(exists=True, file_okay=False),
                     help="Hugging Face tokenizer directory."),
        click.option("--data_output_dirs", required=True, type=click.Path(file_okay=False),
                     help="Stage output directory (bucket-00000/ ... + manifest.json)."),
        click.option("--max_length", type=int, default=None, help="Tokens per sequence (default 4096)."),
        click.option("--num_spliced_dataset_bins", type=int, default=None,
                     help="Bins per category = buckets (default 10 pretrain, 1 sft)."),
        click.option("--seed", type=int, default=None, help="Seed of every random choice (default 42)."),
        click.option("--num_workers", type=int, default=None,
                     help="Tokenizer processes (0: the tokenizer's own threads in one process)."),
        click.option("--bad_records", type=click.Choice(BAD_RECORD_MODES), default=None),
        click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False), default=None,
                     help="A config YAML whose `dataset:` section defines the stage (categories, caps, replay)."),
        click.option("--stage", default=None, help="Stage name in --config (default: a single all-category stage)."),
        click.option("--cache_dir", type=click.Path(file_okay=False), default=None,
                     help="Keep the tokenized corpus here (reused when inputs and tokenizer are unchanged)."),
        click.option("--replay_dir", "replay_dirs", multiple=True, metavar="STAGE=DIR",
                     help="Output dir of an earlier stage named in replay.from (its selection.arrow is read); "
                          "without it that stage's selection is recomputed from --config."),
        click.option("--no_progress", is_flag=True, help="No progress bars."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _run_cli(kind: str, data_input_dirs, tokenizer_dir, data_output_dirs, max_length, num_spliced_dataset_bins,
             seed, num_workers, bad_records, config_file, stage, cache_dir, no_progress, extra: dict,
             replay_dirs=()):
    import yaml

    cfg: dict = {}
    if config_file:
        with open(config_file, encoding="utf-8") as f:
            cfg = dict((yaml.safe_load(f) or {}).get("dataset") or {})
    stage_name = stage or ("pretrain" if kind == "pretrain" else "sft")
    stages = dict(cfg.get("stages") or {})
    if stage is None or stage_name not in stages:
        if stage is not None and config_file:
            raise ConfigError(f"{config_file}: dataset.stages has no stage {stage!r}")
        stages[stage_name] = {"kind": kind}
    st = dict(stages[stage_name] or {})
    if st.get("kind", "pretrain") != kind:
        raise ConfigError(f"dataset.stages.{stage_name}.kind is {st.get('kind', 'pretrain')}, "
                          f"use `cpt prepare-{st.get('kind', 'pretrain')}`")
    for k, v in (("max_length", max_length), ("num_bins", num_spliced_dataset_bins), ("seed", seed),
                 *extra.items()):
        if v is not None:
            st[k] = v
    stages[stage_name] = st
    cfg["stages"] = stages
    for k, v in (("num_workers", num_workers), ("bad_records", bad_records)):
        if v is not None:
            cfg[k] = v
    inputs = [p for p in data_input_dirs.split(",") if p]
    prior = parse_pairs(replay_dirs, "--replay_dir", "STAGE=DIR")
    m = prepare_stage(inputs, tokenizer_dir, data_output_dirs, cfg, stage_name, cache_dir=cache_dir,
                      progress=not no_progress, prior=prior)
    click.echo(json.dumps({k: m[k] for k in ("stage", "buckets", "num_sequences", "num_tokens",
                                              "padding_fraction")} | {"documents": m["documents"]},
                          ensure_ascii=False))


@click.command("prepare-pretrain")
@_common_options
@click.option("--overlong", type=click.Choice(OVERLONG_MODES), default=None,
              help="Documents longer than max_length: split (default), truncate or drop.")
def cli_prepare_pretrain(overlong, **kw):
    """Tokenize {source, target, category} jsonl and write ordered buckets of packed sequences."""
    _run_cli("pretrain", extra={"overlong": overlong}, **kw)


@click.command("prepare-sft")
@_common_options
@click.option("--template", type=click.Choice(["llama2", "llama3", "plain"]), default=None,
              help="Conversation template (default llama2).")
@click.option("--pack/--no-pack", default=None, help="Pack several conversations per sequence (default: no).")
def cli_prepare_sft(template, pack, **kw):
    """Tokenize {messages: [...]} jsonl with a conversation template; loss on assistant turns only."""
    _run_cli("sft", extra={"template": template, "pack": pack}, **kw)
