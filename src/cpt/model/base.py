"""Base models: a user's local HF LLaMA directory, or a tiny seeded LLaMA with the real vocabulary size.

Three kinds, chosen by `model.base.kind` in config (gguf: cpt.model.gguf, a quantized GGUF LLaMA from a pinned
source dequantized into safetensors, sha256 recorded):

- ``local``: a Hugging Face LLaMA directory the user already has (LLaMA-2 7B/13B or any SentencePiece LLaMA).
  It is checked against the base tokenizer (model type, vocabulary size, and the pieces themselves when the
  directory ships a tokenizer.model); any mismatch is one `ModelError` saying what to fix. The files are linked
  (hardlink, else symlink, else copied) into results/<exp>/model/base/, so nothing of several GB is duplicated.
- ``tiny``: a small LLaMA built from the sizes in config with a fixed seed, its vocabulary size taken from the
  base tokenizer directory (32,000 for the real LLaMA-2 vocabulary), saved as safetensors.

Either way the base tokenizer's files are copied in, so the directory opens with AutoModelForCausalLM and
AutoTokenizer, without trust_remote_code.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Mapping

from cpt.core.errors import ModelError
from cpt.core.schema import complete
from cpt.model.vocab import (
    TOKENIZER_FILES,
    copy_tokenizer_files,
    open_model_tokenizer,
    tokenizer_pieces,
    tokenizer_vocab_size,
)
from cpt.model.weights import UNPADDED_KEY, place_file, read_layout, read_model_config, tied_embeddings


def check_model_tokenizer(model_dir: str | os.PathLike, tokenizer_dir: str | os.PathLike) -> dict:
    """Check that a model directory is a LLaMA whose vocabulary matches the tokenizer; return facts about it.

    Accepted: config.json model_type "llama" and vocab_size == the tokenizer's size, or vocab_size larger when
    config.json records the unpadded size (`cpt_tokenizer_vocab_size`, written when rows were padded) and that
    equals the tokenizer's size. When the model directory ships its own tokenizer.model, its pieces must equal
    the tokenizer's.
    """
    model_dir, tokenizer_dir = Path(model_dir), Path(tokenizer_dir)
    cfg = read_model_config(model_dir)
    where = model_dir / "config.json"
    model_type = cfg.get("model_type")
    if model_type != "llama":
        raise ModelError(f"{where}: model_type is {model_type!r}, expected 'llama' (this recipe extends "
                         f"SentencePiece LLaMA models); check model.base.path")
    vocab = cfg.get("vocab_size")
    n_tok = tokenizer_vocab_size(tokenizer_dir)
    unpadded = cfg.get(UNPADDED_KEY, vocab)
    if not isinstance(vocab, int) or unpadded != n_tok or vocab < n_tok:
        raise ModelError(
            f"{where}: vocab_size {vocab}" + (f" ({UNPADDED_KEY} {unpadded})" if unpadded != vocab else "")
            + f" does not match the tokenizer in {tokenizer_dir} ({n_tok} ids). The model and tokenizer are not a "
            f"pair: use the tokenizer the model was trained with (model.base.path vs. the base tokenizer)")
    own = model_dir / "tokenizer.model"
    if own.is_file() and own.resolve() != (tokenizer_dir / "tokenizer.model").resolve():
        mine, theirs = tokenizer_pieces(model_dir), tokenizer_pieces(tokenizer_dir)
        if mine != theirs:
            first = next((i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b), min(len(mine), len(theirs)))
            raise ModelError(f"{own}: its pieces differ from {tokenizer_dir / 'tokenizer.model'} (first at id "
                             f"{first}); the base tokenizer must be the model's own tokenizer")
    return {"model_type": model_type, "vocab_size": vocab, "tokenizer_vocab_size": n_tok,
            "tie_word_embeddings": tied_embeddings(cfg),
            "torch_dtype": cfg.get("torch_dtype"), "hidden_size": cfg.get("hidden_size"),
            "num_hidden_layers": cfg.get("num_hidden_layers")}


def create_tiny_llama(out_dir: str | os.PathLike, tokenizer_dir: str | os.PathLike,
                      params: Mapping[str, Any] | None = None) -> dict:
    """A seeded random LLaMA with the tokenizer's vocabulary size, saved as safetensors + the tokenizer.

    `params`: config key model.base.tiny (keys and defaults in workflow/schemas/model.schema.yaml). Same params +
    tokenizer = same bytes.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    p = complete("model.base.tiny", params)
    if p["hidden_size"] % p["num_attention_heads"]:
        raise ModelError(f"model.base.tiny: hidden_size {p['hidden_size']} is not a multiple of "
                         f"num_attention_heads {p['num_attention_heads']}")
    if p["num_attention_heads"] % p["num_key_value_heads"]:
        raise ModelError(f"model.base.tiny: num_attention_heads {p['num_attention_heads']} is not a multiple of "
                         f"num_key_value_heads {p['num_key_value_heads']}")
    tok = open_model_tokenizer(tokenizer_dir)
    vocab = tokenizer_vocab_size(tokenizer_dir)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=p["hidden_size"],
        intermediate_size=p["intermediate_size"],
        num_hidden_layers=p["num_hidden_layers"],
        num_attention_heads=p["num_attention_heads"],
        num_key_value_heads=p["num_key_value_heads"],
        max_position_embeddings=p["max_position_embeddings"],
        rope_theta=float(p["rope_theta"]),
        rms_norm_eps=float(p["rms_norm_eps"]),
        initializer_range=float(p["initializer_range"]),
        tie_word_embeddings=bool(p["tie_word_embeddings"]),
        bos_token_id=tok.bos_id if tok.bos_id is not None else 1,
        eos_token_id=tok.eos_id if tok.eos_id is not None else 2,
        pad_token_id=tok.pad_id,
        torch_dtype=p["torch_dtype"],
    )
    torch.manual_seed(int(p["seed"]))
    model = LlamaForCausalLM(config).to(getattr(torch, p["torch_dtype"]))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    copy_tokenizer_files(tokenizer_dir, out)
    n_params = sum(t.numel() for t in model.parameters())
    return {"kind": "tiny", "vocab_size": vocab, "parameters": n_params, **p}


def link_local_model(model_dir: str | os.PathLike, out_dir: str | os.PathLike, tokenizer_dir: str | os.PathLike,
                     link: str) -> dict:
    """Check a user's LLaMA directory against the base tokenizer and link its files into `out_dir`."""
    src = Path(model_dir)
    if not src.is_dir():
        raise ModelError(f"model.base.path: {src} is not a directory; set it to a local Hugging Face LLaMA "
                         f"directory (config.json + weights)")
    facts = check_model_tokenizer(src, tokenizer_dir)
    layout = read_layout(src)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    placed = {}
    for q in sorted(src.iterdir()):
        if not q.is_file() or q.name in TOKENIZER_FILES or q.name == "provenance.json":
            continue
        placed[q.name] = place_file(q, out / q.name, link)
    copy_tokenizer_files(tokenizer_dir, out)
    return {"kind": "local", "source": str(src), "format": layout.format, "files": placed, **facts}


def build_base_model(section: Mapping[str, Any], tokenizer_dir: str | os.PathLike,
                     out_dir: str | os.PathLike) -> dict:
    """results/<exp>/model/base/ from the `model.base` config section; writes provenance.json."""
    from cpt.core.provenance import write_provenance

    t0 = time.time()
    s = complete("model.base", section)
    if s["kind"] == "tiny":
        info = create_tiny_llama(out_dir, tokenizer_dir, s["tiny"])
        inputs = {"tokenizer": tokenizer_dir}
    elif s["kind"] == "gguf":
        from cpt.core.sources import archive_path
        from cpt.model.gguf import dequantize_gguf

        info = dequantize_gguf(s, tokenizer_dir, out_dir)
        inputs = {"tokenizer": tokenizer_dir, "archive": archive_path(s["source"])}
    else:
        info = link_local_model(s["path"], out_dir, tokenizer_dir, s["link"])
        inputs = {"tokenizer": tokenizer_dir, "model": s["path"]}
    check_model_tokenizer(out_dir, tokenizer_dir)
    write_provenance(out_dir, "model/base", dict(section), inputs=inputs, started=t0, extra={"model": info})
    return info


def write_base_check(section: Mapping[str, Any], tokenizer_dir: str | os.PathLike, out_json: str | os.PathLike
                     ) -> dict:
    """kind=local in the workflow: check the user's model against the base tokenizer; record the facts in out_json.

    (The workflow reads the user's directory in place; `cpt base-model --kind local` links it instead.)
    """
    from cpt.core.provenance import build_provenance

    t0 = time.time()
    path = complete("model.base", section)["path"]
    if not path or not Path(path).is_dir():
        raise ModelError(f"model.base.path: {path!r} is not a directory; set it to a local Hugging Face LLaMA "
                         f"directory (config.json + weights)")
    facts = check_model_tokenizer(path, tokenizer_dir)
    facts["format"] = read_layout(path).format
    record = build_provenance("model/base", dict(section), inputs={"tokenizer": tokenizer_dir}, started=t0,
                              extra={"model": {"kind": "local", "path": str(path), **facts}})
    out = Path(out_json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    return facts

