"""The corpus box's verbs: `cpt build-corpus`, `cpt split-corpus`, `cpt validate-records`."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import orjson

from cpt.artifacts.corpus import category_languages
from cpt.artifacts.records import REASONS, SCHEMAS, RecordStats, iter_records
from cpt.core.errors import RecordError
from cpt.core.options import config_options, resolve_config, show_config
from cpt.core.schema import apply_overrides
from cpt.corpus.build import build_corpus, normalize_section
from cpt.corpus.conversations import build_idiom_sft
from cpt.corpus.split import normalize_split, split_corpus


def _config(config_file, overrides) -> dict:
    """The experiment config of --config (+ --set), or just the --set keys of `corpus` without one."""
    return resolve_config(config_file, overrides, "corpus") or apply_overrides({}, overrides, "corpus")


@click.command("build-corpus")
@config_options("corpus", "seed=7", config_help="Experiment config (its `corpus:` section); without it: the "
                "embedded demo categories (the schema's default).")
@click.option("--out", "out", type=click.Path(file_okay=False),
              help="Output dir for <category>.jsonl [default: results/<experiment>/corpus/raw].")
@click.option("--sft-out", type=click.Path(file_okay=False),
              help="Also write the idiom SFT conversations (train.jsonl, heldout.jsonl) here.")
@click.option("--sft-only", is_flag=True, help="Only build the SFT conversations (needs --sft-out).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def cli_build_corpus(config_file, overrides, print_config, out, sft_out, sft_only, quiet):
    """Build the raw pretraining corpus (one jsonl per category) and, optionally, the idiom SFT data."""
    config = _config(config_file, overrides)
    section = normalize_section(config.get("corpus"))
    if print_config:
        show_config(section)
    if sft_only and not sft_out:
        raise click.UsageError("--sft-only needs --sft-out")
    if not sft_only:
        if out is None:
            if not config.get("experiment"):
                raise click.UsageError("give --out, or a --config with an `experiment` name")
            out = Path("results") / config["experiment"] / "corpus" / "raw"
        m = build_corpus(section, out, progress=not quiet)
        for name, c in m["categories"].items():
            click.echo(f"{name:20s} {c['lang']}  {c['records']:7d} records  {c['chars']:9d} chars  "
                       f"dropped {c['dropped']}")
        click.echo(f"zh {m['zh_chars']} chars, en {m['en_chars']} chars -> {out}")
    if sft_out:
        m = build_idiom_sft(section["sft"], sft_out)
        click.echo(f"sft {m['category']}: {m['train_records']} train + {m['heldout_records']} held-out "
                   f"conversations -> {sft_out}")


@click.command("split-corpus")
@click.option("--in", "in_dir", type=click.Path(exists=True, file_okay=False),
              help="Dir of <category>.jsonl: the corpus raw/ dir or a cleaned one. Required.")
@click.option("--out", "out", type=click.Path(file_okay=False),
              help="Writes OUT/train/<category>.jsonl and OUT/heldout/<category>.jsonl. Required.")
@config_options("corpus", "split.heldout_fraction=0.05", config_help="Experiment config: corpus.split and the "
                "category languages.")
@click.option("--fraction", type=float, help="Held-out fraction (corpus.split.heldout_fraction).")
@click.option("--max-heldout", type=int, help="Cap on held-out records per category (corpus.split.max_heldout).")
@click.option("--seed", type=int, help="Hash seed (corpus.split.seed).")
@click.option("--skip-bad", is_flag=True, help="Count and skip malformed records instead of failing.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def cli_split_corpus(in_dir, out, config_file, overrides, print_config, fraction, max_heldout, seed, skip_bad,
                     quiet):
    """Split each category deterministically into train and held-out."""
    from cpt.core.options import require

    config = _config(config_file, overrides)
    split = dict((config.get("corpus") or {}).get("split") or {})
    for key, value in (("heldout_fraction", fraction), ("max_heldout", max_heldout), ("seed", seed)):
        if value is not None:
            split[key] = value
    if skip_bad:
        split["on_bad_record"] = "skip"
    split = normalize_split(split)
    if print_config:
        show_config(split)
    require(**{"--in": in_dir, "--out": out})
    langs = category_languages(config) if config_file else None
    m = split_corpus(in_dir, out, split, langs=langs, progress=not quiet)
    for name, c in m["categories"].items():
        click.echo(f"{name:20s} {c['train_records']:7d} train  {c['heldout_records']:5d} held-out")


@click.command("validate-records")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--schema", type=click.Choice(SCHEMAS), default="pretrain", show_default=True)
@click.option("--skip", is_flag=True, help="Count bad records per reason instead of stopping at the first one.")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as one JSON object.")
def cli_validate(files, schema, skip, as_json):
    """Validate jsonl FILES (or directories of *.jsonl) against the pretraining or SFT schema.

    Prints record counts and skipped counts per reason; exits 2 (the exit code of every input error of `cpt`) if
    any line is bad: at the first one (its file:line), or with --skip after the counts.
    """
    from cpt.core.errors import describe

    stats = RecordStats()
    try:
        for _ in iter_records(files, schema=schema, on_error="skip" if skip else "raise", stats=stats):
            pass
    except RecordError as exc:  # the first bad line (without --skip): file:line, like every input error of cpt
        click.echo(f"error: {describe(exc)}", err=True)
        sys.exit(2)
    if as_json:
        click.echo(orjson.dumps(stats.to_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(f"files {stats.files}  lines {stats.lines}  records {stats.records}  "
                   f"blank_lines {stats.blank_lines}  skipped {stats.num_skipped}")
        for reason, n in sorted(stats.skipped.items()):
            click.echo(f"  {reason:16s} {n:8d}  ({REASONS.get(reason, '')})")
        for msg in stats.examples:
            click.echo(f"  e.g. {msg}", err=True)
    if stats.num_skipped:
        sys.exit(2)
