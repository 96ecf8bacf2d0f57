"""Hugging Face tokenizer directories from a SentencePiece ModelProto, and slow/fast agreement checks.

A directory holds tokenizer.model (the ModelProto), tokenizer_config.json (LlamaTokenizer class), special_tokens_map.json
and tokenizer.json (the fast tokenizer, converted from the slow one by transformers' LlamaConverter). Everything is
opened with `AutoTokenizer.from_pretrained(dir)` (never `LlamaTokenizer(vocab_file=...)`, which is broken in
transformers 5.x).

Choice: `legacy: true`. With it, slow and fast tokenizers reproduce sentencepiece (and llama.cpp's 46 reference
tokenizations) exactly. With `legacy: false`, transformers 4.51.3's fast tokenizer uses a Metaspace pre-tokenizer that
adds no dummy "▁" when the text already starts with a space (" Hello" -> [▁Hello] instead of [▁, ▁Hello]):
15 of the 46 reference cases then differ (measured; see tests/unit/test_tokenizer_base.py).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

from cpt.core.errors import TokenizerError
from cpt.tokenizer.spm import ModelProto, save_proto

# the files of a Hugging Face tokenizer directory (written here; copied with a tokenizer, never from a model dir)
TOKENIZER_FILES = (
    "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.json", "added_tokens.json",
)


def _token(content: str) -> dict:
    return {"content": content, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False}


def tokenizer_config(model_max_length: int = 4096) -> dict:
    return {
        "tokenizer_class": "LlamaTokenizer",
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": _token("<s>"),
        "eos_token": _token("</s>"),
        "unk_token": _token("<unk>"),
        "pad_token": None,
        "clean_up_tokenization_spaces": False,
        "legacy": True,
        "model_max_length": model_max_length,
        "sp_model_kwargs": {},
        "padding_side": "right",
    }


def special_tokens_map() -> dict:
    return {"bos_token": _token("<s>"), "eos_token": _token("</s>"), "unk_token": _token("<unk>")}


def _quiet_transformers():
    import transformers

    transformers.logging.set_verbosity_error()
    return transformers


def save_hf_tokenizer(proto: ModelProto, out_dir: str | os.PathLike, model_max_length: int = 4096) -> Path:
    """Write an HF tokenizer directory (slow files + tokenizer.json converted from them)."""
    transformers = _quiet_transformers()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        (out / name).unlink(missing_ok=True)
    save_proto(proto, out / "tokenizer.model")
    config = tokenizer_config(model_max_length)
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n",
                                               encoding="utf-8")
    (out / "special_tokens_map.json").write_text(json.dumps(special_tokens_map(), indent=2) + "\n",
                                                 encoding="utf-8")
    try:
        fast = transformers.LlamaTokenizerFast.from_pretrained(str(out), from_slow=True, legacy=True)
    except Exception as exc:
        raise TokenizerError(f"{out}: transformers could not convert tokenizer.model to a fast tokenizer ({exc})")
    # save the fast tokenizer into a scratch dir and keep only tokenizer.json: the slow files above stay ours
    with tempfile.TemporaryDirectory() as tmp:
        fast.save_pretrained(tmp)
        data = json.loads(Path(tmp, "tokenizer.json").read_text(encoding="utf-8"))
    (out / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False, indent=None, sort_keys=False) + "\n",
                                        encoding="utf-8")
    return out


def load_hf(path: str | os.PathLike, fast: bool):
    transformers = _quiet_transformers()
    try:
        return transformers.AutoTokenizer.from_pretrained(str(path), use_fast=fast)
    except Exception as exc:
        raise TokenizerError(f"{path}: AutoTokenizer.from_pretrained(use_fast={fast}) failed: {exc}") from None


def hf_encode(tok, texts: Sequence[str]) -> list[list[int]]:
    return [tok.encode(t, add_special_tokens=False) for t in texts]


def check_agreement(path: str | os.PathLike, sp, texts: Iterable[str], what: str = "tokenizer",
                    raise_on_mismatch: bool = True) -> dict:
    """Token ids of sentencepiece, HF slow and HF fast must agree on every text (no BOS/EOS).

    Returns {"texts": n, "mismatches": {"slow": k, "fast": k}, "examples": [...]} and raises TokenizerError on any
    mismatch unless raise_on_mismatch is False.
    """
    texts = list(texts)
    slow, fast = load_hf(path, False), load_hf(path, True)
    if type(fast).__name__.endswith("Fast") is False:
        raise TokenizerError(f"{path}: AutoTokenizer did not give a fast tokenizer ({type(fast).__name__})")
    ref = sp.encode(texts, out_type=int)
    report = {"texts": len(texts), "mismatches": {"slow": 0, "fast": 0}, "examples": []}
    for name, tok in (("slow", slow), ("fast", fast)):
        got = hf_encode(tok, texts)
        for text, want, have in zip(texts, ref, got):
            if want != have:
                report["mismatches"][name] += 1
                if len(report["examples"]) < 5:
                    report["examples"].append({"tokenizer": name, "text": text[:200], "sentencepiece": want[:50],
                                               "hf": have[:50]})
    if raise_on_mismatch and any(report["mismatches"].values()):
        ex = report["examples"][0]
        raise TokenizerError(
            f"{path}: {what}: HF tokenizers disagree with sentencepiece on {report['mismatches']} of {len(texts)} "
            f"texts; first: {ex['tokenizer']} on {ex['text']!r}: sentencepiece {ex['sentencepiece']} vs "
            f"hf {ex['hf']}")
    return report


def copy_tokenizer_files(src: str | os.PathLike, dst: str | os.PathLike) -> list[str]:
    """Copy the TOKENIZER_FILES that `src` has into `dst` (overwriting); returns the names copied."""
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in TOKENIZER_FILES:
        if Path(src, name).is_file():
            shutil.copy2(Path(src, name), dst / name)
            copied.append(name)
    return copied
