"""RNG streams of a training process as JSON (python, numpy, torch, cuda), and deterministic reseeding after an
elastic resume (the saved streams belong to other ranks)."""

from __future__ import annotations

import base64
import random

import numpy as np
import torch

# ---- RNG and scheduler state as JSON -------------------------------------------------------------------------

def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.cpu().numpy().tobytes()).decode("ascii")


def _unb64(s: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8).clone()


def rng_state() -> dict:
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": [version, list(internal), gauss],
             "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
             "torch": _b64(torch.get_rng_state())}
    if torch.cuda.is_available():
        state["cuda"] = [_b64(s) for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(_unb64(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([_unb64(s) for s in state["cuda"]])


def rng_file(rank: int) -> str:
    return f"rng-rank{rank:05d}.json"



def reseed(seed: int, rank: int, step: int) -> None:
    """Deterministic per-rank RNG streams after an elastic resume (the saved streams belong to other ranks)."""
    s = (seed * 1_000_003 + step * 7919 + rank) % (2 ** 63)
    random.seed(s)
    np.random.seed(s % (2 ** 32))
    torch.manual_seed(s)
