"""`cpt base-tokenizer | select-pieces | extend-tokenizer | compression` (the tokenizer stage without Snakemake).

Each command reads the `tokenizer` section of an experiment config (--config; a file without a `tokenizer` key is
taken as the section itself; no file = defaults) and takes its input/output paths as options.
"""

from __future__ import annotations

import json

import click

from cpt.core.options import read_section
from cpt.core.schema import default


def _section(config: str | None, vocab_size: int | None = None) -> dict:
    section = read_section(config, "tokenizer")
    if vocab_size is not None:
        section["vocab_size"] = vocab_size
    return section


def _echo(report: dict) -> None:
    report = {k: v for k, v in report.items() if k not in ("examples", "rows")} if isinstance(report, dict) else report
    click.echo(json.dumps(report, indent=2, ensure_ascii=False, default=str))


config_option = click.option("--config", type=click.Path(exists=True, dir_okay=False),
                             help="experiment config (its `tokenizer` section is used)")


@click.command("base-tokenizer")
@config_option
@click.option("--local", "local", type=click.Path(exists=True), help="a local LLaMA tokenizer/model dir instead")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="output HF tokenizer directory")
def cli_base_tokenizer(config, local, out):
    """Step 1.4: the LLaMA-2 tokenizer (GGUF rebuild or local dir) as a verified HF directory."""
    from cpt.tokenizer.base import build_base_tokenizer

    section = _section(config)
    if local:
        section["base"] = {"kind": "local", "path": local}
    _echo(build_base_tokenizer(section, out))


@click.command("select-pieces")
@config_option
@click.option("--base", "base_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--train", "train_files", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="TRAIN split text of the zh categories (.jsonl corpus records or .txt lines); repeatable")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="directory for pieces.jsonl, candidates.jsonl, candidates.json")
@click.option("--vocab-size", type=int, default=None, help="final vocabulary size (overrides the config)")
@click.option("--seed", type=int, default=None,
              help=f"candidate sampling seed (default: the config's tokenizer.seed, else {default('tokenizer.seed')})")
def cli_select_pieces(config, base_dir, train_files, out_dir, vocab_size, seed):
    """Step 1.5: candidates -> filtered, ranked, capped pieces.jsonl."""
    from cpt.tokenizer.pieces import select_pieces

    section = _section(config, vocab_size)
    if seed is None:
        seed = section.get("seed", default("tokenizer.seed"))
    _echo(select_pieces(section, base_dir, out_dir, list(train_files), seed=seed))


@click.command("extend-tokenizer")
@config_option
@click.option("--base", "base_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--pieces", "pieces_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help='jsonl of {"piece": ...} (ours or your own list)')
@click.option("--candidates", "candidates_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="candidates.jsonl: unselected rows are the replacement reserve")
@click.option("--english", "english_files", multiple=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--zh", "zh_files", multiple=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False))
@click.option("--vocab-size", type=int, default=None)
def cli_extend_tokenizer(config, base_dir, pieces_path, candidates_path, english_files, zh_files, out, vocab_size):
    """Step 1.6: append pieces, make them reachable, check English, save the extended HF tokenizer."""
    from cpt.tokenizer.extended import build_extended_tokenizer

    _echo(build_extended_tokenizer(_section(config, vocab_size), base_dir, pieces_path, out, candidates_path,
                                   list(english_files), list(zh_files)))


@click.command("compression")
@config_option
@click.option("--base", "base_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--extended", "extended_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--zh", "zh_files", multiple=True, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--en", "en_files", multiple=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="compression.json (and .md next to it)")
def cli_compression(config, base_dir, extended_dir, zh_files, en_files, out):
    """Step 1.7: tokens per character and per sample, base vs extended, on held-out zh/en text."""
    from cpt.tokenizer.compression import compression_report, to_markdown

    table = compression_report(_section(config), base_dir, extended_dir, list(zh_files), list(en_files), out)
    click.echo(to_markdown(table))
