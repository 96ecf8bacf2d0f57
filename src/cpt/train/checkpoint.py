"""Checkpoints: atomic (temp dir + rename), keep-last-k, a `latest` pointer, full training state; final HF export.

Layout: <output>/checkpoints/step-00000040/{model/, optimizer/, scheduler.pt, state.json, rng-rank00000.pt, ...}
and <output>/checkpoints/latest (a text file holding the directory name). A checkpoint directory exists under
its final name only when complete. Assumes a file system shared by all ranks (as on a SLURM cluster).
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from cpt.errors import TrainError
from cpt.tokenizer.hf import TOKENIZER_FILES  # the files that travel with a model

LATEST = "latest"
STATE = "state.json"


def _barrier():
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def step_dir_name(step: int) -> str:
    return f"step-{step:08d}"


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def latest_checkpoint(root: str | Path) -> Path | None:
    """The directory named by `latest`, or None when there is no checkpoint yet."""
    root = Path(root)
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    name = pointer.read_text(encoding="utf-8").strip()
    path = root / name
    if not (path / STATE).is_file():
        raise TrainError(f"{pointer}: points to {name!r}, which is missing or incomplete; delete the pointer to "
                         f"start over or restore the directory")
    return path


def list_checkpoints(root: str | Path) -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and (p / STATE).is_file())


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(booster, model, optimizer, scheduler, root: str | Path, step: int, state: dict,
                    keep_last: int) -> Path:
    """Collective: every rank calls it. Returns the final directory."""
    root = Path(root)
    rank = _rank()
    name = step_dir_name(step)
    tmp = root / f".tmp-{name}"
    final = root / name
    if rank == 0:
        root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
    _barrier()
    booster.save_model(model, str(tmp / "model"), shard=True, use_safetensors=True)
    booster.save_optimizer(optimizer, str(tmp / "optimizer"), shard=True)
    torch.save(rng_state(), tmp / f"rng-rank{rank:05d}.pt")
    if rank == 0:
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        write_text_atomic(tmp / STATE, json.dumps(state, indent=2, sort_keys=True) + "\n")
    _barrier()
    if rank == 0:
        if final.exists():  # left over from an attempt that died after renaming but before `latest` moved on
            shutil.rmtree(final)
        os.rename(tmp, final)
        write_text_atomic(root / LATEST, name + "\n")
        for old in list_checkpoints(root)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
        for stale in root.glob(".tmp-step-*"):
            shutil.rmtree(stale, ignore_errors=True)
    _barrier()
    return final


def load_checkpoint(booster, model, optimizer, scheduler, path: str | Path, load_rng: bool = True) -> dict:
    """Collective: restores model, optimizer, scheduler (and this rank's RNG); returns state.json."""
    path = Path(path)
    state = json.loads((path / STATE).read_text(encoding="utf-8"))
    booster.load_model(model, str(path / "model"))
    if optimizer is not None:
        booster.load_optimizer(optimizer, str(path / "optimizer"))
    if scheduler is not None:
        scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=False))
    if load_rng:
        rng_file = path / f"rng-rank{_rank():05d}.pt"
        if not rng_file.is_file():
            raise TrainError(f"{rng_file}: missing; the checkpoint was written with a different world size "
                             f"({state.get('world_size')}); resume with the same number of processes")
        set_rng_state(torch.load(rng_file, weights_only=False))
    return state


def export_final(booster, model, hf_config, src_model_dir: str | Path, out_dir: str | Path, dtype: torch.dtype
                 ) -> Path:
    """Collective: write a Hugging Face model directory (safetensors, config, tokenizer files) atomically."""
    out = Path(out_dir)
    tmp = out.with_name(f".tmp-{out.name}")
    rank = _rank()
    if rank == 0:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    _barrier()
    booster.save_model(model, str(tmp), shard=True, use_safetensors=True, size_per_shard=4096)
    if rank == 0:
        cfg = hf_config.__class__.from_dict(hf_config.to_dict())
        cfg.torch_dtype = dtype
        cfg.use_cache = True
        cfg.save_pretrained(tmp)
        src = Path(src_model_dir)
        if (src / "generation_config.json").is_file():
            shutil.copy2(src / "generation_config.json", tmp / "generation_config.json")
        for name in TOKENIZER_FILES:
            if (src / name).is_file():
                shutil.copy2(src / name, tmp / name)
        if out.exists():
            shutil.rmtree(out)
        os.rename(tmp, out)
    _barrier()
    return out
