"""The clean box's verb: `cpt clean`."""

from __future__ import annotations

import time

import click

from cpt.artifacts.corpus import category_files, category_languages
from cpt.clean.pipeline import finalize, prepare, run_clean
from cpt.clean.settings import resolve_section
from cpt.core.errors import ConfigError
from cpt.core.options import config_options, resolve_config, show_config
from cpt.core.schema import parse_pairs


@click.command("clean")
@click.option("--input", "inputs", multiple=True, metavar="CATEGORY=PATH", help="raw jsonl of one category")
@click.option("--in-dir", type=click.Path(file_okay=False, exists=True),
              help="every <category>.jsonl in this directory (corpus/raw)")
@click.option("--out-dir", type=click.Path(file_okay=False), help="results/<exp>/clean")
@config_options("clean", "dedup.threshold=0.8", config_help="Experiment config: its `clean` section and the "
                "category languages (corpus.categories.<name>.lang); validated, with the schema's defaults.")
@click.option("--language", "langs", multiple=True, metavar="CATEGORY=zh|en", help="language of a category")
@click.option("--workers", type=int, default=None, help="processes (default: clean.workers; 0 = all cores)")
@click.option("--step", type=click.Choice(["all", "prepare", "finalize"]), default="all", show_default=True,
              help="prepare = per-category/shard step 1; finalize = the single dedup + output step 2")
@click.option("--work-dir", "work_dirs", multiple=True, type=click.Path(file_okay=False),
              help="work files: where --step prepare writes, where --step finalize reads (repeatable)")
@click.option("--category", "only", multiple=True, help="finalize: categories to include (default: all in work dir)")
@click.option("--no-progress", is_flag=True, help="no progress bars")
def cli_clean(inputs, in_dir, out_dir, config_file, overrides, print_config, langs, workers, step, work_dirs,
              only, no_progress):
    """Clean raw corpus jsonl: normalise, filter, deduplicate, score; write <category>.jsonl + report."""
    from cpt.core.provenance import write_provenance
    from cpt.core.schema import apply_overrides

    t0 = time.time()
    config = resolve_config(config_file, overrides, "clean") or apply_overrides({}, overrides, "clean")
    section = resolve_section(config.get("clean"))
    if print_config:
        show_config(section)
    languages = {**(category_languages(config) if config_file else {}),
                 **parse_pairs(langs, "--language", "CATEGORY=zh|en")}
    paths = parse_pairs(inputs, "--input", "CATEGORY=PATH")
    if in_dir:
        for category, p in category_files(in_dir).items():
            paths.setdefault(category, str(p))
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
