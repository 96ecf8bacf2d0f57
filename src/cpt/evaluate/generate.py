"""Text generation from any Hugging Face causal-LM directory (greedy or sampled, seeded)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from cpt.core.errors import EvalError, ModelError


def pick_device(device: str) -> torch.device:
    """config evaluate.device: auto (cuda when available), cpu, cuda, cuda:N."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_model(model_dir: str | os.PathLike, device: str, dtype: str = "auto"):
    """(model, tokenizer) from a HF directory, eval mode, on `device`; bf16 on GPU, fp32 on CPU by default."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(model_dir)
    if not (path / "config.json").is_file():
        raise ModelError(f"{path}: not a Hugging Face model directory (no config.json)")
    dev = pick_device(device)
    if dtype == "auto":
        torch_dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    else:
        torch_dtype = getattr(torch, dtype)
    from cpt.artifacts.identity import require_tokenizer

    require_tokenizer(path, "model directory with tokenizer files")
    try:
        tok = AutoTokenizer.from_pretrained(path)
    except Exception as exc:  # noqa: BLE001 - report which directory lacks what
        raise ModelError(f"{path}: cannot open its tokenizer ({exc}); copy the tokenizer files into the model dir")
    model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch_dtype).to(dev).eval()
    if model.get_input_embeddings().weight.shape[0] < len(tok):
        raise ModelError(f"{path}: tokenizer has {len(tok)} tokens but the embedding only "
                         f"{model.get_input_embeddings().weight.shape[0]} rows")
    return model, tok


@torch.inference_mode()
def generate(model, tokenizer, prompt: str, max_new_tokens: int = 64, do_sample: bool = False,
             temperature: float = 1.0, top_k: int = 50, top_p: float = 1.0, seed: int = 0,
             add_special_tokens: bool = True) -> str:
    """The continuation of `prompt` (without the prompt). Greedy unless do_sample; sampling is seeded.
    add_special_tokens=False for a prompt that a chat template already rendered with its own BOS."""
    if max_new_tokens < 1:
        raise EvalError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if do_sample and temperature <= 0:
        raise EvalError(f"temperature must be > 0 when sampling, got {temperature}")
    device = next(model.parameters()).device
    enc = tokenizer(prompt, return_tensors="pt", add_special_tokens=add_special_tokens).to(device)
    # only what a causal LM takes: a tokenizer directory without model_input_names (a generic
    # PreTrainedTokenizerFast) also returns token_type_ids, which generate() refuses
    enc = {k: enc[k] for k in ("input_ids", "attention_mask") if k in enc}
    kwargs = dict(max_new_tokens=max_new_tokens, do_sample=do_sample,
                  pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
                  eos_token_id=tokenizer.eos_token_id)
    if do_sample:
        torch.manual_seed(seed)
        kwargs.update(temperature=temperature, top_k=top_k, top_p=top_p)
    else:
        kwargs.update(temperature=None, top_k=None, top_p=None)
    out = model.generate(**enc, **kwargs)
    return tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)


GENERATIONS_FILE = "generations.jsonl"


def chat_prompt(tokenizer, text: str) -> str | None:
    """`text` as one user turn of the tokenizer's own chat_template, ready for the assistant (None without one)."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    return tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                         add_generation_prompt=True)


def generate_set(model, tokenizer, prompts: Sequence[Mapping[str, str]], max_new_tokens: int,
                 chat: bool) -> list[dict]:
    """Greedy continuations of each prompt ({lang, text}) as plain text and, when `chat` and the tokenizer has a
    chat_template, as a user turn of it. One record per (prompt, form)."""
    records = []
    for i, p in enumerate(prompts):
        forms = [("plain", p["text"], True)]
        rendered = chat_prompt(tokenizer, p["text"]) if chat else None
        if rendered is not None:
            forms.append(("chat", rendered, False))
        for form, text, special in forms:
            out = generate(model, tokenizer, text, max_new_tokens, add_special_tokens=special)
            records.append({"index": i, "lang": p["lang"], "prompt": p["text"], "form": form,
                            "prompt_tokens": len(tokenizer(text, add_special_tokens=special)["input_ids"]),
                            "output": out})
    return records


def generate_point(model_dir, out_dir, section: Mapping | None, device: str | None = None,
                   threads: int | None = None) -> list[dict]:
    """The `evaluate.generate` prompts at one model directory: <out_dir>/generations.jsonl + provenance.json."""
    import json
    import time

    from cpt.core.provenance import write_provenance
    from cpt.core.schema import complete, default

    t0 = time.time()
    cfg = complete("evaluate.generate", section)
    if threads:
        torch.set_num_threads(int(threads))
    model, tok = load_model(model_dir, default("evaluate.device") if device is None else device)
    records = generate_set(model, tok, cfg["prompts"], cfg["max_new_tokens"], cfg["chat"])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / GENERATIONS_FILE, "w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    write_provenance(out, "evaluate_generate", dict(cfg), inputs={"model": str(model_dir)}, started=t0)
    return records
