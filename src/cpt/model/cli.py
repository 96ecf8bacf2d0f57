"""`cpt base-model` and `cpt init-embeddings` (the reference's init_model.py argument names). Option defaults are
the schema's (workflow/schemas/model.schema.yaml)."""

from __future__ import annotations

import json

import click

from cpt.core.schema import default, parse_pairs, subschema
from cpt.model.base import build_base_model
from cpt.model.init import run_init

TINY = default("model.base.tiny")
INIT = default("model.init")


def _choices(key: str) -> click.Choice:
    return click.Choice(subschema(key)["enum"])


@click.command("base-model")
@click.option("--tokenizer", "tokenizer_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="Base tokenizer directory (tokenizer.model ...); its size sets vocab_size.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output model directory.")
@click.option("--kind", type=_choices("model.base.kind"), default=default("model.base.kind"), show_default=True)
@click.option("--path", "local_path", type=click.Path(exists=True, file_okay=False), default=None,
              help="kind=local: the user's Hugging Face LLaMA directory.")
@click.option("--link", type=_choices("model.base.link"), default=default("model.base.link"), show_default=True,
              help="kind=local: how the weight files get into --out.")
@click.option("--layers", "num_hidden_layers", type=int, default=TINY["num_hidden_layers"], show_default=True)
@click.option("--hidden-size", type=int, default=TINY["hidden_size"], show_default=True)
@click.option("--heads", "num_attention_heads", type=int, default=TINY["num_attention_heads"], show_default=True)
@click.option("--kv-heads", "num_key_value_heads", type=int, default=TINY["num_key_value_heads"], show_default=True)
@click.option("--intermediate-size", type=int, default=TINY["intermediate_size"], show_default=True)
@click.option("--max-positions", "max_position_embeddings", type=int, default=TINY["max_position_embeddings"],
              show_default=True)
@click.option("--tie-word-embeddings/--no-tie-word-embeddings", default=TINY["tie_word_embeddings"],
              show_default=True)
@click.option("--dtype", "torch_dtype", type=_choices("model.base.tiny.torch_dtype"), default=TINY["torch_dtype"],
              show_default=True)
@click.option("--seed", type=int, default=TINY["seed"], show_default=True)
def cli_base_model(tokenizer_dir, out_dir, kind, local_path, link, **tiny):
    """Build results/<exp>/model/base: a tiny seeded LLaMA, or a checked link to a local HF LLaMA directory."""
    section = {"kind": kind, "path": local_path, "link": link, "tiny": tiny}
    info = build_base_model(section, tokenizer_dir, out_dir)
    click.echo(json.dumps({k: v for k, v in info.items() if k != "files"}, default=str))


@click.command("init-embeddings")
@click.option("--source_model_and_tokenizer_path", "--source-model", "source_model", required=True,
              type=click.Path(exists=True, file_okay=False),
              help="Source HF LLaMA directory (its tokenizer is the old one unless --source-tokenizer is given).")
@click.option("--source_tokenizer_path", "--source-tokenizer", "source_tokenizer", default=None,
              type=click.Path(exists=True, file_okay=False), help="Old (base) tokenizer directory.")
@click.option("--target_tokenizer_path", "--target-tokenizer", "target_tokenizer", required=True,
              type=click.Path(exists=True, file_okay=False), help="Extended tokenizer directory.")
@click.option("--target_model_path", "--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Output model directory.")
@click.option("--method", type=_choices("model.init.method"), default=INIT["method"], show_default=True)
@click.option("--pad-to-multiple-of", type=int, default=INIT["pad_to_multiple_of"],
              help="Pad the matrices to a multiple of N rows.")
@click.option("--dummy-prefix/--no-dummy-prefix", default=INIT["dummy_prefix"], show_default=True,
              help="subword_mean: encode piece text with the old tokenizer's dummy prefix (the reference does).")
@click.option("--seed", type=int, default=INIT["seed"], show_default=True)
@click.option("--multivariate-scale", type=float, default=INIT["multivariate_scale"], show_default=True,
              help="multivariate: covariance multiplier.")
@click.option("--mean-noise-scale", type=float, default=INIT["mean_noise_scale"], show_default=True,
              help="mean_noise: noise std as a fraction of the old rows' per-dimension std.")
@click.option("--copy", "copy_files", is_flag=True, help="Copy untouched shards instead of hardlinking them.")
@click.option("--heldout", multiple=True, metavar="LANG=FILE",
              help="Held-out corpus jsonl for report.json (repeatable), e.g. en=heldout/kjv.jsonl.")
@click.option("--report-max-tokens", type=int, default=INIT["report"]["max_tokens"], show_default=True)
@click.option("--compare-methods", default="", help="Comma-separated other methods to compare in report.json.")
def cli_init_embeddings(source_model, source_tokenizer, target_tokenizer, out_dir, method, pad_to_multiple_of,
                        dummy_prefix, seed, multivariate_scale, mean_noise_scale, copy_files, heldout,
                        report_max_tokens, compare_methods):
    """Extend a LLaMA's embeddings to an extended tokenizer (like the reference init_model.py, embeddings only)."""
    section = {
        "method": method, "dummy_prefix": dummy_prefix, "seed": seed, "multivariate_scale": multivariate_scale,
        "mean_noise_scale": mean_noise_scale,
        "pad_to_multiple_of": pad_to_multiple_of,
        "report": {"max_tokens": report_max_tokens, "compare_methods": [m for m in compare_methods.split(",") if m]},
    }
    if copy_files:
        section["link"] = "copy"
    report = run_init(section, source_model, source_tokenizer or source_model, target_tokenizer, out_dir,
                      parse_pairs(heldout, "--heldout", "LANG=FILE.jsonl", multi=True))
    click.echo(json.dumps({k: report[k] for k in ("vocab", "summary") if k in report}, ensure_ascii=False))


@click.command("export-gguf")
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="HF model directory (e.g. results/<exp>/train/<stage>/final).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The .gguf file to write.")
@click.option("--outtype", type=click.Choice(["f32", "f16", "bf16", "q8_0"]), default=default("export.gguf.outtype"),
              show_default=True, help="Tensor type (llama.cpp's converter; quantize further with llama-quantize).")
@click.option("--pre-tokenizer-from", type=click.Path(exists=True, file_okay=False),
              help="Byte-level BPE: a tokenizer directory llama.cpp recognizes (results/<exp>/tokenizer/base), whose "
                   "pre-tokenizer is declared when the model's own fingerprint is unknown (extended vocabularies); "
                   "its pre-tokenizer and normalizer must equal the model's.")
@click.option("--pre-tokenizer", help="Byte-level BPE: llama.cpp's pre-tokenizer name to declare (e.g. smollm).")
def cli_export_gguf(model_dir, out, outtype, pre_tokenizer_from, pre_tokenizer):
    """A model directory as a GGUF llama.cpp loads (SentencePiece and byte-level BPE), with llama.cpp's own
    converter from the pinned llama-cpp-python sdist."""
    from cpt.model.gguf_export import export_gguf

    info = export_gguf(model_dir, out, outtype, pre_tokenizer=pre_tokenizer, pre_tokenizer_from=pre_tokenizer_from)
    click.echo(json.dumps(info, indent=2))
