"""Initialise the embedding rows of new tokenizer pieces, touching only the embedding matrices.

Methods (`model.init.method`), each applied to the input embeddings and, unless tied, to lm_head:

- ``subword_mean`` (the reference's): tokenize the text of each new piece with the OLD tokenizer and average
  those old rows. The reference calls the old LLaMA tokenizer on the piece string without bos/eos; that equals
  SentencePiece ``encode(piece)`` with the model's dummy prefix, so for the LLaMA-2 vocabulary "中国" becomes
  ["▁", "中", "国"] (ids 29871, 30275, 30356) and the lone "▁" row takes part in the mean of every Chinese piece.
  ``dummy_prefix=True`` (default) reproduces that; ``False`` encodes the bare text (["中", "国"]).
  A piece whose old encoding is empty gets the mean of all old rows (counted in the summary).
- ``mean``: every new row is the mean of all old rows.
- ``mean_noise``: the mean of all old rows plus small Gaussian noise, so that new rows are not identical (identical
  rows get identical gradients from the input side): mean + mean_noise_scale * sigma * z, sigma the per-dimension
  standard deviation of the old rows, z seeded as for multivariate. Hewitt (2021, "Initializing new word embeddings
  for pretrained language models") argues for the mean with a small spread around it; this is its diagonal form.
- ``subword_mean_norm``: the subword mean, rescaled to the mean norm of the old rows it averages (norm-corrected):
  a mean of k rows is shorter than real rows (about 1/sqrt(k) for unrelated rows), so its logits under a tied or
  trained lm_head start too close to the average; the correction keeps the direction and restores the length.
- ``multivariate``: rows drawn from N(mean, scale * covariance) of the old rows. Exactly: z = torch.randn(n_new, d,
  generator=torch.Generator().manual_seed(seed + k), dtype=float32) with k = 0 for the input embeddings and 1 for
  lm_head; rows = mean + z @ L.T in float64, L = cholesky(scale * cov) (cov with n - 1 in the denominator; a
  tiny ridge is added only if the covariance is not positive definite).

Padding (`pad_to_multiple_of`): the matrices get extra rows up to a multiple of N; config.json vocab_size is then the
padded size while the tokenizer keeps its size (recorded as config.json `cpt_tokenizer_vocab_size`). Padded rows are
never produced by the tokenizer and are unused; they hold the mean of the old rows, which keeps their logits at the
average logit, so their share of the softmax is at most n_pad / n_old of it.

Only the two embedding tensors are read (safetensors safe_open; .bin with torch.load(weights_only=True, mmap=True)).
Every other tensor keeps its bytes: shards without embeddings are hardlinked (or copied), a safetensors shard that
also held an embedding is rewritten by streaming the other tensors' bytes, and the new matrices go into their own
shard; the index is rewritten. Memory is bounded by the embedding matrices, not by the number of layers. The source
dtype is kept (bf16 stays bf16); new rows are computed in float32/float64 and rounded once.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from cpt.artifacts.corpus import category_files
from cpt.core.errors import ModelError
from cpt.core.schema import complete
from cpt.model.base import check_model_tokenizer
from cpt.model.init_report import init_report
from cpt.model.rows import SUBWORD_METHODS, extend_matrix, old_token_ids, padded_size
from cpt.model.safetensors_io import write_checkpoint
from cpt.model.vocab import TOKENIZER_FILES, copy_tokenizer_files, tokenizer_pieces, tokenizer_vocab_size
from cpt.model.weights import (
    BASE_VOCAB_KEY,
    EMBED_NAME,
    HEAD_NAME,
    PAD_MULTIPLE_KEY,
    UNPADDED_KEY,
    read_layout,
    read_model_config,
    read_tensor,
    tied_embeddings,
)

log = logging.getLogger(__name__)
SKIP_FILES = {"config.json", "provenance.json", "report.json", "model.safetensors.index.json",
              "pytorch_model.bin.index.json"} | set(TOKENIZER_FILES)


def _check_extension(old_tok: Path, new_tok: Path) -> tuple[list[str], int, int]:
    from cpt.tokenizer.family import model_file

    old = tokenizer_pieces(old_tok)
    new = tokenizer_pieces(new_tok)
    if len(new) < len(old) or new[:len(old)] != old:
        first = next((i for i, (a, b) in enumerate(zip(old, new)) if a != b), min(len(old), len(new)))
        raise ModelError(f"{model_file(new_tok)}: not an extension of {model_file(old_tok)} (its "
                         f"first {len(old)} pieces must be the old ones in order; first difference at id {first}); "
                         f"use the extended tokenizer built from this base tokenizer")
    n_tok = tokenizer_vocab_size(new_tok)
    if n_tok != len(new):
        raise ModelError(f"{new_tok}: has added tokens beyond its pieces ({n_tok} vs {len(new)}); "
                         f"only pieces of {model_file(new_tok).name} can be initialised")
    return new[len(old):], len(old), n_tok


def init_embeddings(source_model: str | os.PathLike, old_tokenizer: str | os.PathLike,
                    new_tokenizer: str | os.PathLike, out_dir: str | os.PathLike, **settings) -> dict:
    """Extend the embeddings of `source_model` from `old_tokenizer` to `new_tokenizer`; write an HF dir to out_dir.

    `settings`: keys of config key model.init (method, dummy_prefix, seed, multivariate_scale, pad_to_multiple_of,
    link); the rest take the schema's defaults. The output is written next to out_dir and renamed into place at
    the end. Returns a summary dict.
    """
    import torch

    t0 = time.time()
    s = complete("model.init", settings)
    method, dummy_prefix, seed, pad_to_multiple_of = s["method"], s["dummy_prefix"], s["seed"], s["pad_to_multiple_of"]
    src, old_tok, new_tok, out = Path(source_model), Path(old_tokenizer), Path(new_tokenizer), Path(out_dir)
    facts = check_model_tokenizer(src, old_tok)
    new_pieces, n_old, n_tok = _check_extension(old_tok, new_tok)
    n_total = padded_size(n_tok, pad_to_multiple_of)
    cfg = read_model_config(src)
    layout = read_layout(src)
    tied = tied_embeddings(cfg)
    if not tied and HEAD_NAME not in layout.weight_map:
        raise ModelError(f"{src / 'config.json'}: tie_word_embeddings is false but the checkpoint has no "
                         f"{HEAD_NAME!r}; the checkpoint is incomplete")
    id_lists = old_token_ids(old_tok, new_pieces, dummy_prefix) if method in SUBWORD_METHODS else None

    new_tensors, details = {}, {}
    for k, name in enumerate([EMBED_NAME] + ([] if tied else [HEAD_NAME])):
        W = read_tensor(layout, name)
        if W.ndim != 2 or W.shape[0] != facts["vocab_size"]:
            raise ModelError(f"{layout.root / layout.weight_map[name]}: {name} has shape {tuple(W.shape)}, "
                             f"expected ({facts['vocab_size']}, hidden) from config.json")
        with torch.no_grad():
            mat, info = extend_matrix(W[:n_old], n_total, n_tok, method, id_lists=id_lists, seed=seed + k,
                                      scale=s["multivariate_scale"], noise_scale=s["mean_noise_scale"])
        new_tensors[name] = mat
        details[name] = {"dtype": str(W.dtype).replace("torch.", ""), "shape": list(mat.shape), **info}
        del W
    drop = {EMBED_NAME, HEAD_NAME} & set(layout.weight_map)

    tmp = out.with_name(out.name + f".tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        written = write_checkpoint(layout, tmp, new_tensors, drop, s["link"])
        del new_tensors
        for q in sorted(src.iterdir()):
            if (q.is_file() and q.name not in SKIP_FILES and not q.name.endswith((".safetensors", ".bin"))
                    and not q.name.endswith(".index.json")):
                shutil.copyfile(q, tmp / q.name)
        cfg["vocab_size"] = n_total
        cfg[UNPADDED_KEY] = n_tok
        cfg[BASE_VOCAB_KEY] = n_old
        cfg[PAD_MULTIPLE_KEY] = int(pad_to_multiple_of) if pad_to_multiple_of else None
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        copy_tokenizer_files(new_tok, tmp)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    summary = {
        "method": method, "dummy_prefix": dummy_prefix, "seed": seed, "tie_word_embeddings": tied,
        "old_vocab": n_old, "tokenizer_vocab": n_tok, "vocab_size": n_total, "new_rows": n_tok - n_old,
        "padded_rows": n_total - n_tok, "pad_to_multiple_of": pad_to_multiple_of,
        "source_format": layout.format, "tensors": details, "files": written["files"],
        "total_size": written["total_size"], "wall_seconds": round(time.time() - t0, 3),
    }
    if method == "multivariate":
        summary["multivariate_scale"] = s["multivariate_scale"]
    if method == "mean_noise":
        summary["mean_noise_scale"] = s["mean_noise_scale"]
    if id_lists is not None:
        lens = [len(x) for x in id_lists]
        prefix_id = _dummy_prefix_id(old_tok)
        summary["subword"] = {
            "mean_length": round(sum(lens) / max(len(lens), 1), 4), "max_length": max(lens, default=0),
            "empty": sum(1 for x in lens if x == 0),
            "lone_prefix_token_first": sum(1 for x in id_lists if x and x[0] == prefix_id),
        }
    return summary


def _dummy_prefix_id(tokenizer_dir: Path) -> int | None:
    for i, p in enumerate(tokenizer_pieces(tokenizer_dir)):
        if p == "\u2581":
            return i
    return None


def run_init(section: Mapping[str, Any], source_model: str | os.PathLike, old_tokenizer: str | os.PathLike,
             new_tokenizer: str | os.PathLike, out_dir: str | os.PathLike,
             heldout: Mapping[str, Sequence[str | os.PathLike]] | None = None) -> dict:
    """results/<exp>/model/init/: the extended model, report.json and provenance.json, from `model.init` config."""
    from cpt.core.provenance import write_provenance

    t0 = time.time()
    s = complete("model.init", section)
    summary = init_embeddings(source_model, old_tokenizer, new_tokenizer, out_dir, **s)
    log.info("initialised %s new rows (%s, %s padded rows) of %s in %.1f s: %s", summary["new_rows"], s["method"],
             summary["padded_rows"], source_model, summary["wall_seconds"], json.dumps(summary["files"]))
    report = init_report(source_model, out_dir, old_tokenizer, new_tokenizer, heldout, **s)
    report["init"] = summary
    log.info("init report: %s", report.get("summary", "no held-out loss (report.max_tokens 0 or no files)"))
    out = Path(out_dir)
    (out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    inputs = {"source_model": source_model, "old_tokenizer": old_tokenizer, "new_tokenizer": new_tokenizer}
    for lang, files in (heldout or {}).items():
        for i, f in enumerate(files):
            inputs[f"heldout_{lang}_{i}"] = f
    write_provenance(out, "model/init", dict(section), inputs=inputs, started=t0,
                     extra={"init": {k: v for k, v in summary.items() if k != "files"}, "files": summary["files"]})
    return report


def heldout_by_lang(heldout_dir: str | os.PathLike, langs: Mapping[str, str]) -> dict[str, list[str]]:
    """{lang: [heldout/<category>.jsonl, ...]} from the corpus categories' languages (files that exist, sorted)."""
    files = category_files(heldout_dir)
    out: dict[str, list[str]] = {}
    for category, lang in sorted(langs.items()):
        if category in files:
            out.setdefault(lang, []).append(str(files[category]))
    return out

