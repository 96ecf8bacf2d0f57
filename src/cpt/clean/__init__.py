"""Corpus cleaning: normalisation, Chinese-aware filters, exact + near dedup, quality scores, a report.

Library: ``run_clean`` (one machine), or ``prepare`` (per category/shard) + ``finalize`` (one job) — see
pipeline.py for the data flow and how the stage runs on a cluster. CLI: ``cpt clean`` (``cli_clean``).
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from cpt.clean.pipeline import DEFAULTS, REASON_ORDER, finalize, prepare, resolve_section, run_clean
from cpt.errors import ConfigError

__all__ = ["DEFAULTS", "REASON_ORDER", "cli_clean", "finalize", "languages_from_config", "prepare",
           "resolve_section", "run_clean"]


def languages_from_config(config: dict) -> dict[str, str]:
    """category -> language from an experiment config: `corpus.categories.<name>.lang` (or `.language`; a
    mapping, or a list of {name, lang}), then `clean.languages`, then `clean.categories.<name>.language`."""
    out: dict[str, str] = {}
    cats = (config.get("corpus") or {}).get("categories") or {}
    items = cats.items() if isinstance(cats, dict) else ((c.get("name"), c) for c in cats if isinstance(c, dict))
    for name, spec in items:
        if isinstance(spec, dict) and name and (spec.get("lang") or spec.get("language")):
            out[name] = spec.get("lang") or spec["language"]
    clean = config.get("clean") or {}
    out.update(clean.get("languages") or {})
    for name, spec in (clean.get("categories") or {}).items():
        if isinstance(spec, dict) and spec.get("language"):
            out[name] = spec["language"]
    return out


def _pairs(values, option: str) -> dict[str, str]:
    out = {}
    for v in values:
        name, sep, rest = v.partition("=")
        if not sep or not name or not rest:
            raise click.BadParameter(f"{v!r}: expected NAME=VALUE", param_hint=option)
        out[name] = rest
    return out


@click.command("clean")
@click.option("--input", "inputs", multiple=True, metavar="CATEGORY=PATH", help="raw jsonl of one category")
@click.option("--in-dir", type=click.Path(file_okay=False, exists=True),
              help="every <category>.jsonl in this directory (corpus/raw)")
@click.option("--out-dir", type=click.Path(file_okay=False), help="results/<exp>/clean")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, exists=True),
              help="experiment config (YAML): its `clean` section and the category languages")
@click.option("--language", "langs", multiple=True, metavar="CATEGORY=zh|en", help="language of a category")
@click.option("--workers", type=int, default=None, help="processes (default: clean.workers; 0 = all cores)")
@click.option("--step", type=click.Choice(["all", "prepare", "finalize"]), default="all", show_default=True,
              help="prepare = per-category/shard step 1; finalize = the single dedup + output step 2")
@click.option("--work-dir", "work_dirs", multiple=True, type=click.Path(file_okay=False),
              help="work files: where --step prepare writes, where --step finalize reads (repeatable)")
@click.option("--category", "only", multiple=True, help="finalize: categories to include (default: all in work dir)")
@click.option("--no-progress", is_flag=True, help="no progress bars")
def cli_clean(inputs, in_dir, out_dir, config_file, langs, workers, step, work_dirs, only, no_progress):
    """Clean raw corpus jsonl: normalise, filter, deduplicate, score; write <category>.jsonl + report."""
    import yaml

    from cpt.provenance import write_provenance

    t0 = time.time()
    config = {}
    if config_file:
        with open(config_file, encoding="utf-8") as f:
            config = yaml.safe_load(f) or {}
    section = config.get("clean") or {}
    languages = {**languages_from_config(config), **_pairs(langs, "--language")}
    paths = _pairs(inputs, "--input")
    if in_dir:
        for p in sorted(Path(in_dir).glob("*.jsonl")):
            paths.setdefault(p.stem, str(p))
    if step in ("all", "prepare") and not paths:
        raise ConfigError("cpt clean: no inputs; give --input CATEGORY=PATH or --in-dir")
    if step != "all" and not work_dirs:
        raise ConfigError(f"cpt clean --step {step}: give --work-dir")
    if step == "prepare" and len(work_dirs) != 1:
        raise ConfigError("cpt clean --step prepare: give exactly one --work-dir")
    if step in ("all", "finalize") and not out_dir:
        raise ConfigError("cpt clean: give --out-dir")
    progress = not no_progress
    if step == "prepare":
        metas = prepare(paths, languages, section, work_dirs[0], workers=workers, progress=progress)
        write_provenance(work_dirs[0], "clean-prepare", section, inputs=paths, started=t0,
                         extra={"counts": {c: {"input": m["input"], "passed": m["passed"]} for c, m in metas.items()}})
        click.echo(f"prepared {', '.join(sorted(metas))} in {work_dirs[0]}")
        return
    if step == "finalize":
        report = finalize(list(work_dirs), out_dir, section, categories=list(only) or None, progress=progress)
    else:
        report = run_clean(paths, out_dir, section, languages=languages, workers=workers, progress=progress)
    write_provenance(out_dir, "clean", section, inputs=paths or {f"work{i}": w for i, w in enumerate(work_dirs)},
                     started=t0,
                     extra={"totals": report["totals"]})
    t = report["totals"]
    click.echo(f"clean: {t['kept']}/{t['input']} records kept; dropped: "
               + (", ".join(f"{k} {v}" for k, v in t["dropped"].items()) or "none") + f" -> {out_dir}")
