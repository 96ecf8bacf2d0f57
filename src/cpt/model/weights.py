"""Where each tensor of a Hugging Face checkpoint lives (safetensors or .bin, single file or sharded with an index),
its config.json, and how files are placed into an output directory."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from cpt.core.errors import ModelError

WEIGHT_SUFFIXES = (".safetensors", ".bin")
INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
SINGLE_FILES = ("model.safetensors", "pytorch_model.bin")
# keys this project adds to config.json of an extended model
UNPADDED_KEY = "cpt_tokenizer_vocab_size"
PAD_MULTIPLE_KEY = "cpt_pad_to_multiple_of"
BASE_VOCAB_KEY = "cpt_base_vocab_size"  # rows below it are the base model's; a LoRA stage's new_rows trains the rest
EMBED_NAME = "model.embed_tokens.weight"
HEAD_NAME = "lm_head.weight"


def tied_embeddings(model_config: Mapping[str, Any]) -> bool:
    """Whether a HF config.json ties lm_head to the input embeddings (absent = not tied, as in LlamaConfig)."""
    return bool(model_config.get("tie_word_embeddings"))


def read_model_config(model_dir: str | os.PathLike) -> dict:
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise ModelError(f"{path}: missing; a Hugging Face model directory needs config.json "
                         f"(check model.base.path in config)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from exc


@dataclass
class CheckpointLayout:
    """Where each tensor of a HF checkpoint lives: format, index file (None if single file), tensor -> file."""

    root: Path
    format: str  # "safetensors" | "bin"
    index_file: str | None
    weight_map: dict[str, str] = field(default_factory=dict)

    @property
    def files(self) -> list[str]:
        """Weight files in the order they first appear in the index (stable)."""
        seen: dict[str, None] = {}
        for name in self.weight_map.values():
            seen.setdefault(name, None)
        return list(seen)

    def tensors_in(self, filename: str) -> list[str]:
        return [k for k, v in self.weight_map.items() if v == filename]


def _safetensors_names(path: Path) -> list[str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return list(f.keys())


def read_layout(model_dir: str | os.PathLike) -> CheckpointLayout:
    """Find the weights of a HF directory: safetensors preferred (index or single file), else .bin."""
    root = Path(model_dir)
    for index_name, fmt in (("model.safetensors.index.json", "safetensors"), ("model.safetensors", "safetensors"),
                            ("pytorch_model.bin.index.json", "bin"), ("pytorch_model.bin", "bin")):
        path = root / index_name
        if not path.is_file():
            continue
        if index_name.endswith(".json"):
            try:
                weight_map = json.loads(path.read_text(encoding="utf-8"))["weight_map"]
            except (json.JSONDecodeError, KeyError) as exc:
                raise ModelError(f"{path}: not a checkpoint index (needs a 'weight_map'): {exc}") from exc
            missing = sorted({f for f in weight_map.values() if not (root / f).is_file()})
            if missing:
                raise ModelError(f"{path}: names shard(s) that are missing: {', '.join(missing)}")
            return CheckpointLayout(root, fmt, index_name, dict(weight_map))
        if fmt == "safetensors":
            names = _safetensors_names(path)
        else:
            names = list(load_bin(path).keys())
        return CheckpointLayout(root, fmt, None, {n: index_name for n in names})
    raise ModelError(f"{root}: no weights found (looked for {', '.join(INDEX_FILES + SINGLE_FILES)})")


def load_bin(path: str | os.PathLike) -> dict:
    """A .bin state dict with torch.load(weights_only=True), memory-mapped when the file format allows it."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as exc:
        if "mmap" not in str(exc):
            raise ModelError(f"{path}: cannot read the checkpoint ({exc})") from exc
        return torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format


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


def place_file(src: Path, dst: Path, link: str) -> str:
    """Put `src` at `dst` by hardlink (falls back to symlink, then copy) or by copy; returns what was done."""
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    if link == "hardlink":
        try:
            os.link(src, dst)
            return "hardlink"
        except OSError:
            pass
        try:
            os.symlink(src.resolve(), dst)
            return "symlink"
        except OSError:
            pass
    elif link != "copy":
        raise ModelError(f"link mode {link!r} unknown; use 'hardlink' or 'copy'")
    shutil.copyfile(src, dst)
    return "copy"

