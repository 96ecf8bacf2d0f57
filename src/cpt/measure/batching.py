"""Batched forward passes of a causal LM, shared by every number several boxes measure (bits per byte, KL of the
embedding init, benchmark scoring): the body/head split, padded batches, length-sorted batching, the pad id."""

from __future__ import annotations

from typing import Sequence

import torch

from cpt.core.errors import EvalError


def split_model(model):
    """(transformer body, LM head) of a causal LM, so that the head runs only on the positions that need it."""
    base = getattr(model, getattr(model, "base_model_prefix", "model"), None)
    head = model.get_output_embeddings()
    if base is None or head is None:
        raise EvalError(f"{type(model).__name__}: cannot separate the transformer body from its LM head")
    return base, head


def pad_batch(batch, pad_id: int, device, left: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Ids and attention mask of token sequences, padded on the right (or the left), on `device`."""
    width = max(len(w) for w in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for r, w in enumerate(batch):
        cols = slice(width - len(w), width) if left else slice(0, len(w))
        ids[r, cols] = torch.as_tensor(w, dtype=torch.long)
        mask[r, cols] = 1
    return ids.to(device), mask.to(device)


def length_batches(lengths: Sequence[int], max_batch_tokens: int, max_batch_size: int) -> list[list[int]]:
    """Indices grouped longest first so that padded size (rows x longest) stays under the token budget."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches, cur = [], []
    for i in order:
        width = lengths[cur[0]] if cur else lengths[i]
        if cur and ((len(cur) + 1) * width > max_batch_tokens or len(cur) >= max_batch_size):
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    return batches


def pad_token_id(tokenizer) -> int:
    for cand in (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id, 0):
        if cand is not None:
            return int(cand)
    return 0
