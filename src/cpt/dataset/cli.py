"""`cpt prepare-pretrain` and `cpt prepare-sft`: the reference's prepare_pretrain_dataset.py arguments over
cpt.dataset.build.prepare_stage."""

from __future__ import annotations

import json

import click

from cpt.core.errors import ConfigError
from cpt.core.options import config_options, require, resolve_config, show_config
from cpt.core.schema import parse_pairs
from cpt.dataset.build import prepare_stage
from cpt.dataset.packing import OVERLONG_MODES
from cpt.dataset.settings import settings_of, stage_settings


def _common_options(f):
    opts = [
        click.option("--data_input_dirs", default=None,
                     help="Comma-separated jsonl directories (every *.jsonl below) or files. Required."),
        click.option("--tokenizer_dir", type=click.Path(exists=True, file_okay=False), default=None,
                     help="Hugging Face tokenizer directory. Required."),
        click.option("--data_output_dirs", type=click.Path(file_okay=False), default=None,
                     help="Stage output directory (bucket-00000/ ... + manifest.json). Required."),
        click.option("--max_length", type=int, default=None, help="Tokens per sequence (dataset.max_length)."),
        click.option("--num_spliced_dataset_bins", type=int, default=None,
                     help="Bins per category = buckets (dataset.num_bins; SFT stages: 1)."),
        click.option("--seed", type=int, default=None, help="Seed of every random choice (dataset.seed)."),
        click.option("--num_workers", type=int, default=None,
                     help="Tokenizer processes (dataset.num_workers; 0: the tokenizer's own threads)."),
        click.option("--on_bad_record", type=click.Choice(["raise", "skip"]), default=None,
                     help="dataset.on_bad_record: stop at a malformed line, or count and skip it."),
        config_options("dataset", "num_bins=4", config_help="An experiment config whose `dataset:` section "
                       "defines the stage (categories, caps, replay); validated, with the schema's defaults."),
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
             seed, num_workers, on_bad_record, config_file, overrides, print_config, stage, cache_dir, no_progress,
             extra: dict, replay_dirs=()):
    from cpt.core.schema import apply_overrides

    config = resolve_config(config_file, overrides, "dataset")
    if config is None:
        config = {"dataset": apply_overrides({}, overrides, "dataset").get("dataset", {})}
    cfg = dict(config["dataset"])
    stage_name = stage or kind
    stages = dict(cfg.get("stages") or {})
    if stage is not None and config_file and stage not in stages:
        raise ConfigError(f"{config_file}: dataset.stages has no stage {stage!r}")
    if stage is None or stage_name not in stages:
        stages[stage_name] = {"kind": kind}
    st = dict(stages[stage_name] or {})
    if st.get("kind", kind) != kind:
        raise ConfigError(f"dataset.stages.{stage_name}.kind is {st['kind']}, use `cpt prepare-{st['kind']}`")
    for k, v in (("max_length", max_length), ("num_bins", num_spliced_dataset_bins), ("seed", seed),
                 *extra.items()):
        if v is not None:
            st[k] = v
    stages[stage_name] = st
    cfg["stages"] = stages
    for k, v in (("num_workers", num_workers), ("on_bad_record", on_bad_record)):
        if v is not None:
            cfg[k] = v
    if print_config:
        # the dataset-wide settings and the stage's effective ones (stage keys win)
        show_config({"dataset": {k: v for k, v in settings_of(cfg).items() if k != "stages"},
                          "stage": stage_settings(cfg, stage_name)})
    require(**{"--data_input_dirs": data_input_dirs, "--tokenizer_dir": tokenizer_dir,
               "--data_output_dirs": data_output_dirs})
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
              help="Documents longer than max_length: split, truncate or drop (dataset.overlong).")
def cli_prepare_pretrain(overlong, **kw):
    """Tokenize {source, target, category} jsonl and write ordered buckets of packed sequences."""
    _run_cli("pretrain", extra={"overlong": overlong}, **kw)


@click.command("prepare-sft")
@_common_options
@click.option("--template", default=None,
              type=click.Choice(["llama2", "llama3", "plain", "chatml", "llama3_chat"]),
              help="Conversation template (dataset.sft.template).")
@click.option("--pack/--no-pack", default=None, help="Pack several conversations per sequence (default: no).")
def cli_prepare_sft(template, pack, **kw):
    """Tokenize {messages: [...]} jsonl with a conversation template; loss on assistant turns only."""
    _run_cli("sft", extra={"template": template, "pack": pack}, **kw)
