"""The init report: row-norm statistics per method, held-out loss and bits per byte per language before and after
the extension, and the next-token KL divergence from the source model on English, for the written method and every
`report.compare_methods` entry (`comparison`: one row per method)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from cpt.core.errors import ModelError
from cpt.core.schema import complete
from cpt.model.rows import SUBWORD_METHODS, extend_matrix, old_token_ids
from cpt.model.vocab import tokenizer_pieces, tokenizer_vocab_size
from cpt.model.weights import (
    EMBED_NAME,
    HEAD_NAME,
    UNPADDED_KEY,
    read_layout,
    read_model_config,
    read_tensor,
    tied_embeddings,
)


def norm_stats(W, lo: int, hi: int) -> dict:
    import torch

    if hi <= lo:
        return {"rows": 0}
    n = W[lo:hi].to(torch.float32).norm(dim=1)
    return {"rows": hi - lo, "mean": round(float(n.mean()), 6),
            "std": round(float(n.std()) if hi - lo > 1 else 0.0, 6)}


def read_heldout(files: Iterable[str | os.PathLike]) -> list[str]:
    """Texts (source + target) of corpus jsonl records, file by file, line by line (validated by cpt.artifacts.records)."""
    from cpt.artifacts.records import iter_records
    from cpt.measure.bpb import record_text

    texts = []
    for rec in iter_records([Path(f) for f in files], schema="pretrain"):
        text = record_text(rec)
        if text:
            texts.append(text)
    return texts


def select_texts(texts: Sequence[str], tokenizer, max_tokens: int) -> list[str]:
    """Leading texts up to `max_tokens` tokens of the old tokenizer (the last one cut at a character boundary)."""
    def count(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False))

    chosen, used = [], 0
    for text in texts:
        if used >= max_tokens:
            break
        n = count(text)
        room = max_tokens - used
        while n > room and text:
            text = text[:min(len(text) - 1, int(len(text) * room / n))]
            n = count(text) if text else 0
        if not text:
            break
        chosen.append(text)
        used += n
    return chosen


def heldout_loss(model, tokenizer, texts: Sequence[str], seq_len: int, batch_size: int) -> dict:
    """Loss per token and bits per byte of `texts` with cpt.measure.bpb's scoring: BOS + tokens, windows that
    predict `seq_len` tokens each (every token once), at most `batch_size` windows per forward pass."""
    from cpt.measure.bpb import score_texts

    r = score_texts(model, tokenizer, list(texts), max_length=seq_len + 1,
                    max_batch_tokens=batch_size * (seq_len + 1))
    return {"tokens": r["tokens"], "bytes": r["bytes"], "loss": round(r["nll_nats"] / max(r["tokens"], 1), 6),
            "bits_per_byte": round(r["nll_nats"] / math.log(2) / max(r["bytes"], 1), 6)}


def english_ids(tok_old, tok_new, texts: Sequence[str] | None) -> dict | None:
    """The English texts' ids under the old tokenizer (valid for both models) and whether the new tokenizer gives
    the same ids (its guarantee on English text); None without English texts."""
    if not texts:
        return None
    old = tok_old(list(texts), add_special_tokens=False)["input_ids"]
    new = tok_new(list(texts), add_special_tokens=False)["input_ids"]
    return {"ids": old, "identical": old == new}


def english_kl(before_model, after_model, tok_old, docs, seq_len: int, batch_size: int) -> dict:
    """KL(source || initialised) of the next-token distribution on `docs` (cpt.measure.kl, same windows as the
    held-out loss)."""
    from cpt.measure.batching import pad_token_id
    from cpt.measure.kl import next_token_kl

    r = next_token_kl(before_model, after_model, docs, tok_old.bos_token_id, seq_len + 1, pad_token_id(tok_old),
                      batch_size * (seq_len + 1))
    return {k: (round(v, 8) if isinstance(v, float) else v) for k, v in r.items()}


def comparison(methods: Sequence[str], loss: Mapping[str, Any], kl: Mapping[str, Any]) -> list[dict]:
    """One row per method: step-0 bits per byte per language (and its change) and the English KL."""
    rows = []
    for m in methods:
        row: dict[str, Any] = {"method": m}
        for lang in sorted(loss):
            a = loss[lang]["after"][m]
            row[f"{lang}_bits_per_byte"] = a["bits_per_byte"]
            row[f"{lang}_delta_bits_per_byte"] = a["delta_bits_per_byte"]
        if m in kl:
            row["en_kl_nats"] = kl[m]["mean_kl_nats"]
        rows.append(row)
    return rows


def _load_tokenizer(tokenizer_dir: Path):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(tokenizer_dir))
    except Exception as exc:  # noqa: BLE001 - report which directory could not be opened
        raise ModelError(f"{tokenizer_dir}: cannot open the tokenizer ({exc}); expected a Hugging Face tokenizer "
                         f"directory") from exc


def _load_model(model_dir: Path):
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # shard-loading bars of a few ms would clutter the step's log
    return AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype="auto")


def init_report(source_model: str | os.PathLike, init_model: str | os.PathLike, old_tokenizer: str | os.PathLike,
                new_tokenizer: str | os.PathLike, heldout: Mapping[str, Sequence[str | os.PathLike]] | None = None,
                **settings) -> dict:
    """Row-norm statistics per method and held-out loss per language before/after extension.

    `settings`: config key model.init (method, report.compare_methods, report.max_tokens, ...; schema defaults
    for the rest). `heldout` maps a language ("en", "zh", ...) to corpus jsonl files. The "before" loss is the
    source model with the old tokenizer, "after" the initialised model (as written, for `method`; for other
    `compare_methods` the same model with their rows swapped in) with the new tokenizer, on the same texts. Loss
    per token changes meaning when the tokenization changes, so bits per byte (comparable across tokenizers) is
    given too.
    """
    import torch

    s = complete("model.init", settings)
    method, seed, rep = s["method"], s["seed"], s["report"]
    max_tokens, seq_len, batch_size = rep["max_tokens"], rep["seq_len"], rep["batch_size"]
    src, dst = Path(source_model), Path(init_model)
    old_tok, new_tok = Path(old_tokenizer), Path(new_tokenizer)
    cfg = read_model_config(dst)
    n_old = tokenizer_vocab_size(old_tok)
    n_tok = cfg.get(UNPADDED_KEY, cfg["vocab_size"])
    n_total = cfg["vocab_size"]
    tied = tied_embeddings(cfg)
    names = [EMBED_NAME] + ([] if tied else [HEAD_NAME])
    labels = {EMBED_NAME: "input_embeddings", HEAD_NAME: "lm_head"}
    methods = [method] + [m for m in rep["compare_methods"] if m != method]

    src_layout, dst_layout = read_layout(src), read_layout(dst)
    matrices: dict[str, dict[str, Any]] = {m: {} for m in methods}
    for name in names:
        matrices[method][name] = read_tensor(dst_layout, name)
    others = [m for m in methods if m != method]
    if others:
        new_pieces = tokenizer_pieces(new_tok)[n_old:n_tok]
        id_lists = (old_token_ids(old_tok, new_pieces, s["dummy_prefix"])
                    if set(SUBWORD_METHODS) & set(others) else None)
        for k, name in enumerate(names):
            W = read_tensor(src_layout, name)[:n_old]
            for m in others:
                matrices[m][name], _ = extend_matrix(W, n_total, n_tok, m, id_lists=id_lists, seed=seed + k,
                                                     scale=s["multivariate_scale"],
                                                     noise_scale=s["mean_noise_scale"])
    report: dict[str, Any] = {
        "method": method, "tie_word_embeddings": tied,
        "vocab": {"old": n_old, "new": n_tok, "matrix_rows": n_total, "new_rows": n_tok - n_old,
                  "padded_rows": n_total - n_tok},
        "norms": {m: {labels[n]: {"old": norm_stats(matrices[m][n], 0, n_old),
                                  "new": norm_stats(matrices[m][n], n_old, n_tok)} for n in names}
                  for m in methods},
    }

    heldout = {lang: list(files) for lang, files in (heldout or {}).items() if files}
    if heldout and max_tokens > 0:
        tok_old, tok_new = _load_tokenizer(old_tok), _load_tokenizer(new_tok)
        texts = {lang: select_texts(read_heldout(files), tok_old, max_tokens) for lang, files in heldout.items()}
        loss: dict[str, Any] = {}
        before_model = _load_model(src)
        for lang, ts in texts.items():
            loss[lang] = {"texts": len(ts), "before": heldout_loss(before_model, tok_old, ts, seq_len, batch_size),
                          "after": {}}
        kl_docs = english_ids(tok_old, tok_new, texts.get("en")) if rep["kl"] else None
        if not kl_docs:
            del before_model
        after_model = _load_model(dst)
        kl: dict[str, Any] = {}
        for m in methods:
            if m != method:
                with torch.no_grad():
                    after_model.get_input_embeddings().weight.copy_(matrices[m][EMBED_NAME])
                    if not tied:
                        after_model.get_output_embeddings().weight.copy_(matrices[m][HEAD_NAME])
            if kl_docs:
                kl[m] = english_kl(before_model, after_model, tok_old, kl_docs["ids"], seq_len, batch_size)
            for lang, ts in texts.items():
                rec = heldout_loss(after_model, tok_new, ts, seq_len, batch_size)
                b = loss[lang]["before"]
                rec["delta_loss"] = round(rec["loss"] - b["loss"], 6)
                rec["delta_bits_per_byte"] = round(rec["bits_per_byte"] - b["bits_per_byte"], 6)
                loss[lang]["after"][m] = rec
        report["loss"] = loss
        if kl_docs:
            report["kl_en"] = {"definition": "mean over English held-out positions of KL(source || initialised) of "
                                             "the next-token distribution, nats (cpt.measure.kl)",
                               "english_ids_identical": kl_docs["identical"], "methods": kl}
        report["comparison"] = comparison(methods, loss, kl)
        report["heldout"] = {lang: [str(f) for f in files] for lang, files in heldout.items()}
        report["max_tokens"] = max_tokens
        lines = []
        for lang in sorted(loss):
            a = loss[lang]["after"][method]
            lines.append(f"{lang}: loss {loss[lang]['before']['loss']:.4f} -> {a['loss']:.4f} nats/token "
                         f"({a['delta_loss']:+.4f}), {a['delta_bits_per_byte']:+.4f} bits/byte")
        if method in kl:
            lines.append(f"English next-token KL from the source {kl[method]['mean_kl_nats']:.5f} nats")
        report["summary"] = f"{method}: " + "; ".join(lines)
        if "en" in loss:
            report["english_loss_moved"] = loss["en"]["after"][method]["delta_loss"]
    return report

