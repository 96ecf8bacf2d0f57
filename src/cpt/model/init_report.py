"""The init report: row-norm statistics per method and held-out loss per language before and after the extension."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from cpt.errors import ModelError
from cpt.model.layout import EMBED_NAME, HEAD_NAME, UNPADDED_KEY, read_layout, read_model_config, read_tensor
from cpt.model.rows import METHODS, extend_matrix, old_token_ids
from cpt.model.vocab import load_sp_proto, tokenizer_vocab_size

def norm_stats(W, lo: int, hi: int) -> dict:
    import torch

    if hi <= lo:
        return {"rows": 0}
    n = W[lo:hi].to(torch.float32).norm(dim=1)
    return {"rows": hi - lo, "mean": round(float(n.mean()), 6),
            "std": round(float(n.std()) if hi - lo > 1 else 0.0, 6)}


def read_heldout(files: Iterable[str | os.PathLike]) -> list[str]:
    """Texts (source + target) of corpus jsonl records, file by file, line by line (validated by cpt.records)."""
    from cpt.records import iter_records

    texts = []
    for rec in iter_records([Path(f) for f in files], schema="pretrain"):
        text = (rec.get("source") or "") + (rec.get("target") or "")
        if text:
            texts.append(text)
    return texts


def select_texts(texts: Sequence[str], sp, max_tokens: int) -> list[str]:
    """Leading texts up to `max_tokens` tokens of the old tokenizer (the last one cut at a character boundary)."""
    chosen, used = [], 0
    for text in texts:
        if used >= max_tokens:
            break
        n = len(sp.encode(text))
        room = max_tokens - used
        while n > room and text:
            text = text[:min(len(text) - 1, int(len(text) * room / n))]
            n = len(sp.encode(text)) if text else 0
        if not text:
            break
        chosen.append(text)
        used += n
    return chosen


def lm_loss(model, docs_ids: Sequence[Sequence[int]], bos_id: int, seq_len: int = 256, batch_size: int = 4) -> dict:
    """Summed next-token NLL over every text token (each predicted once; windows of seq_len, fresh context)."""
    import torch
    import torch.nn.functional as F

    windows = []
    for ids in docs_ids:
        seq = [bos_id] + list(ids)
        for s in range(0, len(seq) - 1, seq_len):
            windows.append(seq[s:s + seq_len + 1])
    nll, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for b in range(0, len(windows), batch_size):
            batch = windows[b:b + batch_size]
            L = max(len(w) for w in batch) - 1
            inp = torch.zeros(len(batch), L, dtype=torch.long)
            lab = torch.full((len(batch), L), -100, dtype=torch.long)
            att = torch.zeros(len(batch), L, dtype=torch.long)
            for i, w in enumerate(batch):
                inp[i, :len(w) - 1] = torch.tensor(w[:-1])
                lab[i, :len(w) - 1] = torch.tensor(w[1:])
                att[i, :len(w) - 1] = 1
            logits = model(input_ids=inp, attention_mask=att).logits.float()
            nll += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), lab.reshape(-1), ignore_index=-100,
                                         reduction="sum"))
            count += int((lab != -100).sum())
    return {"nll": nll, "tokens": count}


def _loss_record(nll: float, tokens: int, nbytes: int) -> dict:
    return {"tokens": tokens, "bytes": nbytes, "loss": round(nll / max(tokens, 1), 6),
            "bits_per_byte": round(nll / math.log(2) / max(nbytes, 1), 6)}


def _load_model(model_dir: Path):
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # shard-loading bars of a few ms would clutter the step's log
    return AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype="auto")


def init_report(source_model: str | os.PathLike, init_model: str | os.PathLike, old_tokenizer: str | os.PathLike,
                new_tokenizer: str | os.PathLike, heldout: Mapping[str, Sequence[str | os.PathLike]] | None = None,
                *, method: str = "subword_mean", compare_methods: Sequence[str] = (), dummy_prefix: bool = True,
                seed: int = 0, multivariate_scale: float = 1.0, max_tokens: int = 20000, seq_len: int = 256,
                batch_size: int = 4) -> dict:
    """Row-norm statistics per method and held-out loss per language before/after extension.

    `heldout` maps a language ("en", "zh", ...) to corpus jsonl files. The "before" loss is the source model with
    the old tokenizer, "after" the initialised model (as written, for `method`; for other `compare_methods` the
    same model with their rows swapped in) with the new tokenizer, on the same texts. Loss per token changes
    meaning when the tokenization changes, so bits per byte (comparable across tokenizers) is given too.
    """
    import sentencepiece as spm
    import torch

    src, dst = Path(source_model), Path(init_model)
    old_tok, new_tok = Path(old_tokenizer), Path(new_tokenizer)
    cfg = read_model_config(dst)
    n_old = tokenizer_vocab_size(old_tok)
    n_tok = cfg.get(UNPADDED_KEY, cfg["vocab_size"])
    n_total = cfg["vocab_size"]
    tied = bool(cfg.get("tie_word_embeddings", False))
    names = [EMBED_NAME] + ([] if tied else [HEAD_NAME])
    labels = {EMBED_NAME: "input_embeddings", HEAD_NAME: "lm_head"}
    methods = [method] + [m for m in compare_methods if m != method]
    for m in methods:
        if m not in METHODS:
            raise ModelError(f"model.init.report.compare_methods: {m!r} unknown; use {', '.join(METHODS)}")

    src_layout, dst_layout = read_layout(src), read_layout(dst)
    matrices: dict[str, dict[str, Any]] = {m: {} for m in methods}
    for name in names:
        matrices[method][name] = read_tensor(dst_layout, name)
    others = [m for m in methods if m != method]
    if others:
        new_pieces = [p.piece for p in load_sp_proto(new_tok).pieces][n_old:n_tok]
        id_lists = old_token_ids(old_tok, new_pieces, dummy_prefix) if "subword_mean" in others else None
        for k, name in enumerate(names):
            W = read_tensor(src_layout, name)[:n_old]
            for m in others:
                matrices[m][name], _ = extend_matrix(W, n_total, n_tok, m, id_lists=id_lists, seed=seed + k,
                                                     scale=multivariate_scale)
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
        sp_old = spm.SentencePieceProcessor(model_file=str(old_tok / "tokenizer.model"))
        sp_new = spm.SentencePieceProcessor(model_file=str(new_tok / "tokenizer.model"))
        texts = {lang: select_texts(read_heldout(files), sp_old, max_tokens) for lang, files in heldout.items()}
        loss: dict[str, Any] = {}
        before_model = _load_model(src)
        for lang, ts in texts.items():
            nbytes = sum(len(t.encode("utf-8")) for t in ts)
            r = lm_loss(before_model, sp_old.encode(ts), sp_old.bos_id(), seq_len, batch_size)
            loss[lang] = {"texts": len(ts), "before": _loss_record(r["nll"], r["tokens"], nbytes), "after": {}}
        del before_model
        after_model = _load_model(dst)
        for m in methods:
            if m != method:
                with torch.no_grad():
                    after_model.get_input_embeddings().weight.copy_(matrices[m][EMBED_NAME])
                    if not tied:
                        after_model.get_output_embeddings().weight.copy_(matrices[m][HEAD_NAME])
            for lang, ts in texts.items():
                nbytes = loss[lang]["before"]["bytes"]
                r = lm_loss(after_model, sp_new.encode(ts), sp_new.bos_id(), seq_len, batch_size)
                rec = _loss_record(r["nll"], r["tokens"], nbytes)
                b = loss[lang]["before"]
                rec["delta_loss"] = round(rec["loss"] - b["loss"], 6)
                rec["delta_bits_per_byte"] = round(rec["bits_per_byte"] - b["bits_per_byte"], 6)
                loss[lang]["after"][m] = rec
        report["loss"] = loss
        report["heldout"] = {lang: [str(f) for f in files] for lang, files in heldout.items()}
        report["max_tokens"] = max_tokens
        lines = []
        for lang in sorted(loss):
            a = loss[lang]["after"][method]
            lines.append(f"{lang}: loss {loss[lang]['before']['loss']:.4f} -> {a['loss']:.4f} nats/token "
                         f"({a['delta_loss']:+.4f}), {a['delta_bits_per_byte']:+.4f} bits/byte")
        report["summary"] = f"{method}: " + "; ".join(lines)
        if "en" in loss:
            report["english_loss_moved"] = loss["en"]["after"][method]["delta_loss"]
    return report

