"""Inputs of the CPU smoke run of a locked config (`cpt smoke-inputs`; config/overlays/cpu-smoke.yaml, docs/hpc.md).

A locked config (config/colossal-llama-2-7b.yaml, -13b.yaml) reads the user's LLaMA-2 directory and corpus. The
overlay points both at small stand-ins, and this module makes them, offline, from pinned inputs:
- `model.base.path`: a tiny LLaMA-2-shaped model (`model.base.tiny` of the overlay: layers, sizes, positions)
  carrying the real LLaMA-2 tokenizer (the 32,000-piece vocabulary rebuilt from llama.cpp's GGUF, verified), so
  model_base_check, the 69,104-piece extension and subword_mean run exactly as on the real weights;
- `corpus.categories.<name>.paths[0]`: one jsonl of real text per locked category ({"source", "target",
  "category"} records), from the builders of the embedded demo (SMOKE_TEXT below);
- `evaluate.data_root`: small stand-in benchmarks in the public layouts, one folder per published benchmark
  (cpt.evaluate.samples), so that every benchmark a locked config lists runs.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

import click

from cpt.core.errors import ConfigError

# locked category -> (lang, demo builder, characters): enough text for 10 bins of 4,096-token sequences
SMOKE_TEXT: dict[str, tuple[str, str, int]] = {
    "zh_web": ("zh", "peoples_daily", 90000),
    "zh_books": ("zh", "chinese_poetry", 90000),
    "zh_encyclo": ("zh", "idioms", 90000),
    "en_web": ("en", "gutenberg_novel", 200000),
    "en_books": ("en", "shakespeare", 200000),
}


def _smoke_paths(overlay: Mapping[str, Any], source: str) -> tuple[Path, dict, dict[str, Path]]:
    base = (overlay.get("model") or {}).get("base") or {}
    if not base.get("path"):
        raise ConfigError(f"{source}: config key model.base.path: required (where the tiny LLaMA-2 goes)")
    cats = (overlay.get("corpus") or {}).get("categories") or {}
    files = {}
    for name, entry in cats.items():
        paths = (entry or {}).get("paths") or []
        if name not in SMOKE_TEXT:
            raise ConfigError(f"{source}: config key corpus.categories.{name}: no smoke text for it "
                              f"(known: {', '.join(SMOKE_TEXT)})")
        if len(paths) != 1 or not str(paths[0]).endswith(".jsonl"):
            raise ConfigError(f"{source}: config key corpus.categories.{name}.paths: expected one .jsonl file")
        files[name] = Path(paths[0])
    if not files:
        raise ConfigError(f"{source}: config key corpus.categories: the overlay names no category files")
    return Path(base["path"]), dict(base.get("tiny") or {}), files


def smoke_inputs(overlay_path: str | Path, seed: int | None = None) -> dict:
    """Write the tiny model and the per-category jsonl files an overlay points at; returns what was written."""
    from cpt.core.schema import default
    from cpt.core.yamlio import read_yaml
    from cpt.corpus.build import build_corpus
    from cpt.model.base import create_tiny_llama
    from cpt.tokenizer.base import build_base_tokenizer

    overlay = read_yaml(overlay_path) or {}
    model_dir, shape, files = _smoke_paths(overlay, str(overlay_path))
    with tempfile.TemporaryDirectory(prefix="cpt-smoke-") as tmp:
        tok = Path(tmp) / "tokenizer"
        build_base_tokenizer({"kind": "llama2_gguf"}, tok)
        if model_dir.exists():
            shutil.rmtree(model_dir)
        model = create_tiny_llama(model_dir, tok, shape)
        section = {"seed": default("seed") if seed is None else seed, "categories": {
            name: {"lang": SMOKE_TEXT[name][0], "builder": SMOKE_TEXT[name][1], "max_chars": SMOKE_TEXT[name][2]}
            for name in files}}
        manifest = build_corpus(section, Path(tmp) / "corpus", progress=False)
        for name, dest in files.items():
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(tmp) / "corpus" / f"{name}.jsonl", dest)
    data_root = (overlay.get("evaluate") or {}).get("data_root")
    if data_root:
        from cpt.evaluate.samples import write_samples

        write_samples(data_root)
    return {"model": str(model_dir), "parameters": model["parameters"], "vocab_size": model["vocab_size"],
            "benchmarks": data_root,
            "corpus": {name: {"path": str(p), "records": manifest["categories"][name]["records"],
                              "chars": manifest["categories"][name]["chars"]} for name, p in files.items()}}


@click.command("smoke-inputs")
@click.option("--overlay", "overlay", default="config/overlays/cpu-smoke.yaml", show_default=True,
              type=click.Path(exists=True, dir_okay=False), help="the scale overlay whose inputs to write")
@click.option("--seed", type=int, default=None, help="corpus selection seed (default: the config schema's seed)")
def cli_smoke_inputs(overlay, seed):
    """Write the tiny LLaMA-2 (real tokenizer) and the small real jsonl per category of a smoke overlay."""
    import json

    click.echo(json.dumps(smoke_inputs(overlay, seed), indent=2, ensure_ascii=False))
