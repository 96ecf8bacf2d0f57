"""Streaming safetensors I/O: read a header, write a file minus some tensors by copying the others' bytes, write
tensors one by one from memory, and carry a whole checkpoint over with new embedding matrices in a last shard."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any, Iterable, Mapping

from cpt.core.errors import ModelError
from cpt.model.weights import load_bin, place_file


def safetensors_header(path: str | os.PathLike) -> tuple[dict, int]:
    """(header dict, byte offset of the data section) of a safetensors file; ModelError naming the file and what
    is wrong when the header is malformed (length past the end, not a JSON object, offsets outside the data)."""
    size = os.path.getsize(path)

    def bad(what: str) -> ModelError:
        return ModelError(f"{path}: not a valid safetensors file: {what}; the file is damaged or not safetensors "
                          f"(re-download or re-export the model)")

    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise bad(f"{size} bytes, shorter than the 8-byte header length")
        n = struct.unpack("<Q", raw)[0]
        if n > size - 8 or n > 100 << 20:
            raise bad(f"header length {n} bytes does not fit in the file of {size} bytes")
        try:
            header = json.loads(f.read(n).decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise bad(f"the header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise bad("the header is not a JSON object")
    data = size - 8 - n
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offs = entry.get("data_offsets") if isinstance(entry, dict) else None
        if (not isinstance(offs, list) or len(offs) != 2 or not all(isinstance(o, int) for o in offs)
                or not 0 <= offs[0] <= offs[1] <= data or not isinstance(entry.get("shape"), list)):
            raise bad(f"tensor {name!r}: shape or data_offsets missing or outside the {data} data bytes")
    return header, 8 + n


def check_model_weights(model_dir: str | os.PathLike, vocab_size: int | None) -> None:
    """Every *.safetensors header of a model directory is valid, and its input embedding has `vocab_size` rows
    (config.json's); ModelError naming the file otherwise, before any loader gives a traceback."""
    for f in sorted(Path(model_dir).glob("*.safetensors")):
        header, _ = safetensors_header(f)
        for name, entry in header.items():
            if name.endswith("embed_tokens.weight") and vocab_size is not None and entry["shape"][:1] != [vocab_size]:
                raise ModelError(f"{f}: {name} has {entry['shape'][0]} rows but {Path(model_dir) / 'config.json'} "
                                 f"says vocab_size {vocab_size}; the config and the weights disagree (fix "
                                 f"config.json or re-export the model)")


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


def write_checkpoint(layout, out: Path, new_tensors: Mapping[str, Any], drop: set[str], link: str
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

