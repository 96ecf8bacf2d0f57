"""Initialise the embedding rows of new tokenizer pieces, touching only the embedding matrices.

Methods (`model.init.method`), each applied to the input embeddings and, unless tied, to lm_head:

- ``subword_mean`` (the reference's): tokenize the text of each new piece with the OLD tokenizer and average
  those old rows. The reference calls the old LLaMA tokenizer on the piece string without bos/eos; that equals
  SentencePiece ``encode(piece)`` with the model's dummy prefix, so for the LLaMA-2 vocabulary "中国" becomes
  ["▁", "中", "国"] (ids 29871, 30275, 30356) and the lone "▁" row takes part in the mean of every Chinese piece.
  ``dummy_prefix=True`` (default) reproduces that; ``False`` encodes the bare text (["中", "国"]).
  A piece whose old encoding is empty gets the mean of all old rows (counted in the summary).
- ``mean``: every new row is the mean of all old rows.
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
import math
import os
import shutil
import struct
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import click

from cpt.errors import ModelError
from cpt.modeling import (
    PAD_MULTIPLE_KEY, TOKENIZER_FILES, UNPADDED_KEY, check_model_tokenizer, copy_tokenizer_files, load_bin,
    load_sp_proto, place_file, read_layout, read_model_config, tokenizer_vocab_size,
)

log = logging.getLogger(__name__)
METHODS = ("subword_mean", "mean", "multivariate")
EMBED_NAME = "model.embed_tokens.weight"
HEAD_NAME = "lm_head.weight"
EMBED_SHARD = "embeddings"  # the output shard holding the new matrices is the last one
ROW_CHUNK = 4096
SKIP_FILES = {"config.json", "provenance.json", "report.json", "model.safetensors.index.json",
              "pytorch_model.bin.index.json"} | set(TOKENIZER_FILES)


# ---------------------------------------------------------------------------------------------------------------
# new rows

def old_token_ids(old_tokenizer_dir: str | os.PathLike, pieces: Sequence[str], dummy_prefix: bool = True
                  ) -> list[list[int]]:
    """Ids of each piece's text under the OLD tokenizer (no bos/eos), all pieces in one batch call."""
    import sentencepiece as spm

    proto = load_sp_proto(old_tokenizer_dir)
    if not dummy_prefix:
        proto.normalizer_spec.add_dummy_prefix = False
    sp = spm.SentencePieceProcessor(model_proto=proto.SerializeToString())
    return [list(x) for x in sp.encode(list(pieces))] if pieces else []


def row_mean(W) -> "torch.Tensor":
    """float64 mean of the rows of W: float32 partial sums of 64 rows, summed in float64 (fast, ~1e-7 relative)."""
    import torch

    W = W.to(torch.float32)
    n, d = W.shape
    full = n - n % 64
    acc = W[:full].view(-1, 64, d).sum(1).to(torch.float64).sum(0) if full else torch.zeros(d, dtype=torch.float64)
    if full < n:
        acc += W[full:].sum(0).to(torch.float64)
    return acc / n


def row_covariance(W, mu) -> "torch.Tensor":
    """float64 sample covariance (n - 1) of the rows of W: float32 products of centred row chunks, summed in float64."""
    import torch

    d = W.shape[1]
    mu32 = mu.to(torch.float32)
    acc = torch.zeros(d, d, dtype=torch.float64)
    for s in range(0, W.shape[0], ROW_CHUNK):
        x = W[s:s + ROW_CHUNK].to(torch.float32) - mu32
        acc += (x.T @ x).to(torch.float64)
    return acc / max(W.shape[0] - 1, 1)


def subword_mean_rows(W, id_lists: Sequence[Sequence[int]], fallback) -> tuple["torch.Tensor", int]:
    """float32 (n_new, d): mean of W's rows at each id list (repeats count); empty lists get `fallback`.

    Vectorised: one embedding_bag over all new rows at once (sum in float32, then divided by the list length),
    no per-row Python work on tensors and no (rows, k, d) intermediate.
    """
    import torch
    import torch.nn.functional as F

    W = W.to(torch.float32)
    lengths = torch.tensor([len(x) for x in id_lists], dtype=torch.long)
    flat = torch.tensor([i for x in id_lists for i in x], dtype=torch.long)
    offsets = torch.zeros(len(id_lists), dtype=torch.long)
    if len(id_lists) > 1:
        offsets[1:] = lengths[:-1].cumsum(0)
    out = F.embedding_bag(flat, W, offsets, mode="sum")
    empty = lengths == 0
    out /= lengths.clamp_min(1).to(torch.float32).unsqueeze(1)
    n_empty = int(empty.sum())
    if n_empty:
        out[empty] = fallback.to(torch.float32)
    return out, n_empty


def multivariate_rows(W, n_new: int, seed: int, scale: float = 1.0, mu=None) -> "torch.Tensor":
    """float32 (n_new, d) samples of N(mean, scale * cov) of W's rows (see the module docstring for the exact recipe)."""
    import torch

    mu = row_mean(W) if mu is None else mu
    cov = row_covariance(W, mu) * float(scale)
    L, info = torch.linalg.cholesky_ex(cov)
    ridge = 1e-10 * float(cov.diagonal().mean().clamp_min(1e-30))
    while int(info) != 0:
        L, info = torch.linalg.cholesky_ex(cov + ridge * torch.eye(cov.shape[0], dtype=cov.dtype))
        ridge *= 10
    g = torch.Generator().manual_seed(int(seed))
    z = torch.randn(n_new, W.shape[1], generator=g, dtype=torch.float32)
    out = torch.empty(n_new, W.shape[1], dtype=torch.float32)
    for s in range(0, n_new, ROW_CHUNK):
        out[s:s + ROW_CHUNK] = (mu + z[s:s + ROW_CHUNK].to(torch.float64) @ L.T).to(torch.float32)
    return out


def extend_matrix(W_old, n_total: int, n_tok: int, method: str, *, id_lists=None, seed: int = 0,
                  scale: float = 1.0) -> tuple["torch.Tensor", dict]:
    """(n_total, d) matrix in W_old's dtype: old rows as they are, new rows by `method`, padded rows = mean."""
    import torch

    if method not in METHODS:
        raise ModelError(f"model.init.method: {method!r} unknown; use one of {', '.join(METHODS)}")
    n_old, d = W_old.shape
    n_new = n_tok - n_old
    out = torch.empty(n_total, d, dtype=W_old.dtype)
    out[:n_old] = W_old
    W32 = W_old.to(torch.float32)  # one conversion; a no-op view for float32 sources
    mu = row_mean(W32)
    info: dict[str, Any] = {}
    if n_new > 0:
        if method == "subword_mean":
            if id_lists is None or len(id_lists) != n_new:
                raise ModelError(f"subword_mean needs one id list per new piece ({n_new})")
            rows, n_empty = subword_mean_rows(W32, id_lists, mu)
            info["empty_fallback"] = n_empty
        elif method == "mean":
            rows = mu.to(torch.float32).expand(n_new, d)
        else:
            rows = multivariate_rows(W32, n_new, seed, scale, mu=mu)
        out[n_old:n_tok] = rows.to(W_old.dtype)
        del rows
    del W32
    if n_total > n_tok:
        out[n_tok:] = mu.to(W_old.dtype)
    return out, info


# ---------------------------------------------------------------------------------------------------------------
# checkpoint I/O

def read_tensor(layout, name: str):
    """One tensor of a checkpoint, without loading the others."""
    if name not in layout.weight_map:
        raise ModelError(f"{layout.root}: no tensor {name!r} in the checkpoint; is this a LlamaForCausalLM?")
    path = layout.root / layout.weight_map[name]
    if layout.format == "safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            return f.get_tensor(name)
    return load_bin(path)[name]


def safetensors_header(path: str | os.PathLike) -> tuple[dict, int]:
    """(header dict, byte offset of the data section) of a safetensors file."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n)), 8 + n


def write_safetensors_subset(src: str | os.PathLike, dst: str | os.PathLike, drop: Iterable[str]) -> list[str]:
    """Write `src` minus the tensors in `drop` to `dst`, streaming the kept tensors' bytes unchanged."""
    header, base = safetensors_header(src)
    meta = header.pop("__metadata__", None)
    drop = set(drop)
    kept = sorted(((k, v) for k, v in header.items() if k not in drop), key=lambda kv: kv[1]["data_offsets"][0])
    new: dict[str, Any] = {}
    if meta is not None:
        new["__metadata__"] = meta
    ranges, offset = [], 0
    for name, v in kept:
        b, e = v["data_offsets"]
        new[name] = {"dtype": v["dtype"], "shape": v["shape"], "data_offsets": [offset, offset + e - b]}
        offset += e - b
        if ranges and ranges[-1][1] == b:
            ranges[-1][1] = e
        else:
            ranges.append([b, e])
    head = json.dumps(new, separators=(",", ":")).encode("utf-8")
    head += b" " * (-len(head) % 8)
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        fout.write(struct.pack("<Q", len(head)))
        fout.write(head)
        for b, e in ranges:
            fin.seek(base + b)
            left = e - b
            while left:
                block = fin.read(min(left, 64 << 20))
                if not block:
                    raise ModelError(f"{src}: truncated safetensors file (tensor data ends early)")
                fout.write(block)
                left -= len(block)
    return [k for k, _ in kept]


_ST_DTYPES = {"float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16", "int64": "I64",
              "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL"}


def save_tensors(path: str | os.PathLike, tensors: Mapping[str, Any], metadata: Mapping[str, str] | None = None
                 ) -> None:
    """Write a safetensors file tensor by tensor from memory (no serialised copy of the whole file in RAM).

    Layout as the safetensors library writes it: larger items first, then by name, so every tensor is aligned.
    """
    import torch

    items = []
    for name, t in tensors.items():
        dt = str(t.dtype).replace("torch.", "")
        if dt not in _ST_DTYPES:
            raise ModelError(f"{path}: cannot store {name} of dtype {dt} in safetensors")
        items.append((name, t, dt))
    items.sort(key=lambda x: (-x[1].element_size(), x[0]))
    header: dict[str, Any] = {"__metadata__": dict(metadata)} if metadata else {}
    offset = 0
    for name, t, dt in items:
        nbytes = t.numel() * t.element_size()
        header[name] = {"dtype": _ST_DTYPES[dt], "shape": list(t.shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for _, t, _ in items:
            if t.numel():
                f.write(memoryview(t.detach().contiguous().reshape(-1).view(torch.uint8).numpy()))


def _shard_name(i: int, n: int) -> str:
    return f"model-{i:05d}-of-{n:05d}.safetensors"


def write_checkpoint(layout, out: Path, new_tensors: Mapping[str, Any], drop: set[str], link: str = "hardlink"
                     ) -> dict:
    """Carry every tensor of `layout` except `drop` over unchanged, add `new_tensors` in a last shard, write the index.

    Returns {"files": {out name: how}, "total_size": bytes}.
    """
    plan = []
    for src in layout.files:
        names = layout.tensors_in(src)
        kept = [n for n in names if n not in drop]
        if kept:
            plan.append((src, kept, len(kept) != len(names)))
    n_out = len(plan) + 1
    weight_map: dict[str, str] = {}
    how: dict[str, str] = {}
    for i, (src, kept, touched) in enumerate(plan, start=1):
        name = _shard_name(i, n_out)
        if layout.format == "safetensors":
            if touched:
                write_safetensors_subset(layout.root / src, out / name, drop)
                how[name] = f"rewritten from {src} without {', '.join(sorted(set(layout.tensors_in(src)) & drop))}"
            else:
                how[name] = f"{place_file(layout.root / src, out / name, link)} of {src}"
        else:
            state = load_bin(layout.root / src)
            save_tensors(out / name, {k: state[k] for k in kept}, metadata={"format": "pt"})
            del state
            how[name] = f"converted from {src}"
        weight_map.update({k: name for k in kept})
    name = _shard_name(n_out, n_out)
    save_tensors(out / name, new_tensors, metadata={"format": "pt"})
    how[name] = "new embedding matrices: " + ", ".join(new_tensors)
    weight_map.update({k: name for k in new_tensors})
    total = 0
    for fname in how:
        header, _ = safetensors_header(out / fname)
        total += sum(v["data_offsets"][1] - v["data_offsets"][0] for k, v in header.items() if k != "__metadata__")
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return {"files": how, "total_size": total}


# ---------------------------------------------------------------------------------------------------------------
# the step

def _check_extension(old_tok: Path, new_tok: Path) -> tuple[list[str], int, int]:
    old = [p.piece for p in load_sp_proto(old_tok).pieces]
    new = [p.piece for p in load_sp_proto(new_tok).pieces]
    if len(new) < len(old) or new[:len(old)] != old:
        first = next((i for i, (a, b) in enumerate(zip(old, new)) if a != b), min(len(old), len(new)))
        raise ModelError(f"{new_tok / 'tokenizer.model'}: not an extension of {old_tok / 'tokenizer.model'} (its "
                         f"first {len(old)} pieces must be the old ones in order; first difference at id {first}); "
                         f"use the extended tokenizer built from this base tokenizer")
    n_tok = tokenizer_vocab_size(new_tok)
    if n_tok != len(new):
        raise ModelError(f"{new_tok}: has added tokens beyond its SentencePiece pieces ({n_tok} vs {len(new)}); "
                         f"only pieces in tokenizer.model can be initialised")
    return new[len(old):], len(old), n_tok


def padded_size(n: int, multiple: int | None) -> int:
    if not multiple:
        return n
    if int(multiple) < 1:
        raise ModelError(f"model.init.pad_to_multiple_of: {multiple} must be a positive integer or null")
    return -(-n // int(multiple)) * int(multiple)


def init_embeddings(source_model: str | os.PathLike, old_tokenizer: str | os.PathLike,
                    new_tokenizer: str | os.PathLike, out_dir: str | os.PathLike, *, method: str = "subword_mean",
                    dummy_prefix: bool = True, seed: int = 0, multivariate_scale: float = 1.0,
                    pad_to_multiple_of: int | None = None, link: str = "hardlink") -> dict:
    """Extend the embeddings of `source_model` from `old_tokenizer` to `new_tokenizer`; write an HF dir to out_dir.

    The output is written next to out_dir and renamed into place at the end. Returns a summary dict.
    """
    import torch

    t0 = time.time()
    src, old_tok, new_tok, out = Path(source_model), Path(old_tokenizer), Path(new_tokenizer), Path(out_dir)
    if method not in METHODS:
        raise ModelError(f"model.init.method: {method!r} unknown; use one of {', '.join(METHODS)}")
    facts = check_model_tokenizer(src, old_tok)
    new_pieces, n_old, n_tok = _check_extension(old_tok, new_tok)
    n_total = padded_size(n_tok, pad_to_multiple_of)
    cfg = read_model_config(src)
    layout = read_layout(src)
    tied = bool(cfg.get("tie_word_embeddings", False))
    if not tied and HEAD_NAME not in layout.weight_map:
        raise ModelError(f"{src / 'config.json'}: tie_word_embeddings is false but the checkpoint has no "
                         f"{HEAD_NAME!r}; the checkpoint is incomplete")
    id_lists = old_token_ids(old_tok, new_pieces, dummy_prefix) if method == "subword_mean" else None

    new_tensors, details = {}, {}
    for k, name in enumerate([EMBED_NAME] + ([] if tied else [HEAD_NAME])):
        W = read_tensor(layout, name)
        if W.ndim != 2 or W.shape[0] != facts["vocab_size"]:
            raise ModelError(f"{layout.root / layout.weight_map[name]}: {name} has shape {tuple(W.shape)}, "
                             f"expected ({facts['vocab_size']}, hidden) from config.json")
        with torch.no_grad():
            mat, info = extend_matrix(W[:n_old], n_total, n_tok, method, id_lists=id_lists, seed=seed + k,
                                      scale=multivariate_scale)
        new_tensors[name] = mat
        details[name] = {"dtype": str(W.dtype).replace("torch.", ""), "shape": list(mat.shape), **info}
        del W
    drop = {EMBED_NAME, HEAD_NAME} & set(layout.weight_map)

    tmp = out.with_name(out.name + f".tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        written = write_checkpoint(layout, tmp, new_tensors, drop, link)
        del new_tensors
        for q in sorted(src.iterdir()):
            if (q.is_file() and q.name not in SKIP_FILES and not q.name.endswith((".safetensors", ".bin"))
                    and not q.name.endswith(".index.json")):
                shutil.copyfile(q, tmp / q.name)
        cfg["vocab_size"] = n_total
        cfg[UNPADDED_KEY] = n_tok
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
        summary["multivariate_scale"] = multivariate_scale
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
    for i, p in enumerate(load_sp_proto(tokenizer_dir).pieces):
        if p.piece == "\u2581":
            return i
    return None


# ---------------------------------------------------------------------------------------------------------------
# init report: row norms, held-out loss before and after

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


# ---------------------------------------------------------------------------------------------------------------
# workflow / CLI entry points

INIT_DEFAULTS: dict[str, Any] = {
    "method": "subword_mean", "dummy_prefix": True, "seed": 1234, "multivariate_scale": 1.0,
    "pad_to_multiple_of": None, "link": "hardlink",
    "report": {"max_tokens": 20000, "seq_len": 256, "batch_size": 4, "compare_methods": []},
}


def run_init(section: Mapping[str, Any], source_model: str | os.PathLike, old_tokenizer: str | os.PathLike,
             new_tokenizer: str | os.PathLike, out_dir: str | os.PathLike,
             heldout: Mapping[str, Sequence[str | os.PathLike]] | None = None) -> dict:
    """results/<exp>/model/init/: the extended model, report.json and provenance.json, from `model.init` config."""
    from cpt.provenance import write_provenance

    t0 = time.time()
    s = {**INIT_DEFAULTS, **dict(section)}
    rep = {**INIT_DEFAULTS["report"], **dict(s.get("report") or {})}
    summary = init_embeddings(source_model, old_tokenizer, new_tokenizer, out_dir, method=s["method"],
                              dummy_prefix=bool(s["dummy_prefix"]), seed=int(s["seed"]),
                              multivariate_scale=float(s["multivariate_scale"]),
                              pad_to_multiple_of=s["pad_to_multiple_of"], link=s["link"])
    log.info("initialised %s new rows (%s, %s padded rows) of %s in %.1f s: %s", summary["new_rows"], s["method"],
             summary["padded_rows"], source_model, summary["wall_seconds"], json.dumps(summary["files"]))
    report = init_report(source_model, out_dir, old_tokenizer, new_tokenizer, heldout, method=s["method"],
                         compare_methods=rep["compare_methods"], dummy_prefix=bool(s["dummy_prefix"]),
                         seed=int(s["seed"]), multivariate_scale=float(s["multivariate_scale"]),
                         max_tokens=int(rep["max_tokens"]), seq_len=int(rep["seq_len"]),
                         batch_size=int(rep["batch_size"]))
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
    root = Path(heldout_dir)
    out: dict[str, list[str]] = {}
    for category, lang in sorted(langs.items()):
        f = root / f"{category}.jsonl"
        if f.is_file():
            out.setdefault(lang, []).append(str(f))
    return out


def _parse_heldout(values: Sequence[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for v in values:
        lang, sep, path = v.partition("=")
        if not sep or not lang or not path:
            raise click.BadParameter(f"{v!r}: expected LANG=FILE.jsonl", param_hint="--heldout")
        out.setdefault(lang, []).append(path)
    return out


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
@click.option("--method", type=click.Choice(METHODS), default="subword_mean", show_default=True)
@click.option("--pad-to-multiple-of", type=int, default=None, help="Pad the matrices to a multiple of N rows.")
@click.option("--dummy-prefix/--no-dummy-prefix", default=True, show_default=True,
              help="subword_mean: encode piece text with the old tokenizer's dummy prefix (the reference does).")
@click.option("--seed", type=int, default=INIT_DEFAULTS["seed"], show_default=True)
@click.option("--multivariate-scale", type=float, default=1.0, show_default=True,
              help="multivariate: covariance multiplier.")
@click.option("--copy", "copy_files", is_flag=True, help="Copy untouched shards instead of hardlinking them.")
@click.option("--heldout", multiple=True, metavar="LANG=FILE",
              help="Held-out corpus jsonl for report.json (repeatable), e.g. en=heldout/kjv.jsonl.")
@click.option("--report-max-tokens", type=int, default=INIT_DEFAULTS["report"]["max_tokens"], show_default=True)
@click.option("--compare-methods", default="", help="Comma-separated other methods to compare in report.json.")
def cli_init_embeddings(source_model, source_tokenizer, target_tokenizer, out_dir, method, pad_to_multiple_of,
                        dummy_prefix, seed, multivariate_scale, copy_files, heldout, report_max_tokens,
                        compare_methods):
    """Extend a LLaMA's embeddings to an extended tokenizer (like the reference init_model.py, embeddings only)."""
    section = {
        "method": method, "dummy_prefix": dummy_prefix, "seed": seed, "multivariate_scale": multivariate_scale,
        "pad_to_multiple_of": pad_to_multiple_of, "link": "copy" if copy_files else "hardlink",
        "report": {**INIT_DEFAULTS["report"], "max_tokens": report_max_tokens,
                   "compare_methods": [m for m in compare_methods.split(",") if m]},
    }
    report = run_init(section, source_model, source_tokenizer or source_model, target_tokenizer, out_dir,
                      _parse_heldout(heldout))
    click.echo(json.dumps({k: report[k] for k in ("vocab", "summary") if k in report}, ensure_ascii=False))
