"""The demo corpora: raw jsonl per category from real text in the pinned archives (or the user's jsonl files),
a deterministic held-out split, and demo SFT conversations (idioms). `cpt build-corpus`, `cpt split-corpus`.

Layout: results/<exp>/corpus/raw/<category>.jsonl (+manifest.json, provenance.json),
results/<exp>/corpus/{train,heldout}/<category>.jsonl (+manifest.json, provenance.json),
results/<exp>/corpus/sft/{train,heldout}.jsonl (+manifest.json, provenance.json).
"""

from __future__ import annotations

from pathlib import Path

import click

from cpt.corpus.build import DEFAULT_CATEGORIES, build_corpus, category_langs, normalize_section, seeded_hash
from cpt.corpus.sft import build_idiom_sft
from cpt.corpus.split import heldout_mask, split_corpus

__all__ = ["build_corpus", "split_corpus", "build_idiom_sft", "normalize_section", "category_langs",
           "heldout_mask", "seeded_hash", "DEFAULT_CATEGORIES", "cli_build_corpus", "cli_split_corpus",
           "load_section"]


def load_section(config: str | Path | None) -> tuple[dict, str | None]:
    """(corpus section, experiment name) of a config file; a file without a `corpus` key is the section itself."""
    if config is None:
        return {}, None
    import yaml

    with open(config, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    if "corpus" in data:
        return data["corpus"] or {}, data.get("experiment")
    return data, data.get("experiment")


@click.command("build-corpus")
@click.option("--config", "config", type=click.Path(exists=True, dir_okay=False),
              help="Experiment config (its `corpus:` section) or a file holding just that section. "
                   "Without it: the embedded demo categories.")
@click.option("--out", "out", type=click.Path(file_okay=False),
              help="Output dir for <category>.jsonl [default: results/<experiment>/corpus/raw].")
@click.option("--sft-out", type=click.Path(file_okay=False),
              help="Also write the idiom SFT conversations (train.jsonl, heldout.jsonl) here.")
@click.option("--sft-only", is_flag=True, help="Only build the SFT conversations (needs --sft-out).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def cli_build_corpus(config, out, sft_out, sft_only, quiet):
    """Build the raw pretraining corpus (one jsonl per category) and, optionally, the idiom SFT data."""
    section, experiment = load_section(config)
    if sft_only and not sft_out:
        raise click.UsageError("--sft-only needs --sft-out")
    if not sft_only:
        if out is None:
            if not experiment:
                raise click.UsageError("give --out, or a --config with an `experiment` name")
            out = Path("results") / experiment / "corpus" / "raw"
        m = build_corpus(section, out, progress=not quiet)
        for name, c in m["categories"].items():
            click.echo(f"{name:20s} {c['lang']}  {c['records']:7d} records  {c['chars']:9d} chars  "
                       f"dropped {c['dropped']}")
        click.echo(f"zh {m['zh_chars']} chars, en {m['en_chars']} chars -> {out}")
    if sft_out:
        m = build_idiom_sft(section.get("sft"), sft_out)
        click.echo(f"sft {m['category']}: {m['train_records']} train + {m['heldout_records']} held-out "
                   f"conversations -> {sft_out}")


@click.command("split-corpus")
@click.option("--in", "in_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="Dir of <category>.jsonl: the corpus raw/ dir or a cleaned one.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False),
              help="Writes OUT/train/<category>.jsonl and OUT/heldout/<category>.jsonl.")
@click.option("--config", "config", type=click.Path(exists=True, dir_okay=False),
              help="Experiment config: defaults come from corpus.split (and category languages).")
@click.option("--fraction", type=float, help="Held-out fraction [corpus.split.heldout_fraction, 0.02].")
@click.option("--max-heldout", type=int, help="Cap on held-out records per category [200].")
@click.option("--seed", type=int, help="Hash seed [1234].")
@click.option("--skip-bad", is_flag=True, help="Count and skip malformed records instead of failing.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def cli_split_corpus(in_dir, out, config, fraction, max_heldout, seed, skip_bad, quiet):
    """Split each category deterministically into train and held-out."""
    section, _ = load_section(config)
    split = dict(section.get("split") or {})
    for key, value in (("heldout_fraction", fraction), ("max_heldout", max_heldout), ("seed", seed)):
        if value is not None:
            split[key] = value
    if skip_bad:
        split["on_bad_record"] = "skip"
    langs = category_langs(section) if config and section.get("categories") else None
    m = split_corpus(in_dir, out, split, langs=langs, progress=not quiet)
    for name, c in m["categories"].items():
        click.echo(f"{name:20s} {c['train_records']:7d} train  {c['heldout_records']:5d} held-out")
