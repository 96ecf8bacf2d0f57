"""Forward passes for scoring: next-token logits at the last position of left-padded prompts, a shared prompt
prefix run once with its key/value cache reused for the questions that share it, and short greedy generation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from cpt.measure.batching import pad_batch, split_model


@torch.inference_mode()
def last_position_logits(model, batch: Sequence[Sequence[int]], pad_id: int) -> torch.Tensor:
    """Next-token logits (float32, [batch, vocab]) after each left-padded prompt, from one forward pass of the
    transformer body and the LM head applied to the last hidden state only."""
    base, head = split_model(model)
    device = next(model.parameters()).device
    input_ids, mask = pad_batch(batch, pad_id, device, left=True)
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    out = base(input_ids=input_ids, attention_mask=mask, position_ids=position_ids, use_cache=False)
    hidden = out.last_hidden_state[:, -1, :]
    return head(hidden).float()


def _common_prefix_len(seqs: Sequence[Sequence[int]]) -> int:
    first = seqs[0]
    n = min(len(x) for x in seqs)
    for other in seqs[1:]:
        k = 0
        lim = min(n, len(other))
        while k < lim and other[k] == first[k]:
            k += 1
        n = k
        if n == 0:
            break
    return n


@dataclass
class Group:
    """Prompts that start with the same `prefix` tokens (same instruction and few-shot examples)."""

    prefix: list[int]
    members: list[int]  # indices into the prompt list
    suffixes: list[list[int]]


def plan_groups(prompts: Sequence, min_prefix: int = 32, min_members: int = 2) -> tuple[list[Group], list[int]]:
    """Group prompts by their shared few-shot prefix; the prefix is the exact common token prefix of the group's
    tokenized prompts (never assumed from the text), leaving at least one token per suffix. Returns the groups
    worth sharing and the indices of the remaining prompts."""
    by_key: dict[str, list[int]] = {}
    for i, p in enumerate(prompts):
        if p.prefix_key is not None:
            by_key.setdefault(p.prefix_key, []).append(i)
    groups, alone = [], [i for i, p in enumerate(prompts) if p.prefix_key is None]
    for members in by_key.values():
        seqs = [prompts[i].ids for i in members]
        n = min(_common_prefix_len(seqs), min(len(x) for x in seqs) - 1)
        if len(members) < min_members or n < min_prefix:
            alone.extend(members)
            continue
        groups.append(Group(list(seqs[0][:n]), members, [prompts[i].ids[n:] for i in members]))
    return groups, sorted(alone)


@torch.inference_mode()
def prefix_cache(model, prefix: Sequence[int]):
    """Per-layer key/value tensors of a prefix (batch 1)."""
    base, _ = split_model(model)
    device = next(model.parameters()).device
    ids = torch.as_tensor([list(prefix)], dtype=torch.long, device=device)
    out = base(input_ids=ids, use_cache=True)
    cache = out.past_key_values
    return cache.to_legacy_cache() if hasattr(cache, "to_legacy_cache") else cache


@torch.inference_mode()
def suffix_last_logits(model, legacy_cache, prefix_len: int, batch: Sequence[Sequence[int]],
                       pad_id: int) -> torch.Tensor:
    """Next-token logits after prefix + each suffix: suffixes right-padded after the shared cached prefix (real
    tokens never see the padding behind them under the causal mask), hidden state gathered at each last token."""
    from transformers.cache_utils import DynamicCache

    base, head = split_model(model)
    device = next(model.parameters()).device
    b = len(batch)
    width = max(len(x) for x in batch)
    ids = torch.full((b, width), pad_id, dtype=torch.long)
    for r, seq in enumerate(batch):
        ids[r, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
    cache = DynamicCache.from_legacy_cache(tuple((k.expand(b, -1, -1, -1), v.expand(b, -1, -1, -1))
                                                 for k, v in legacy_cache))
    positions = torch.arange(prefix_len, prefix_len + width, device=device).unsqueeze(0).expand(b, -1)
    cache_position = torch.arange(prefix_len, prefix_len + width, device=device)
    out = base(input_ids=ids.to(device), past_key_values=cache, position_ids=positions,
               cache_position=cache_position, use_cache=True)
    last = torch.as_tensor([len(x) - 1 for x in batch], device=device)
    hidden = out.last_hidden_state[torch.arange(b, device=device), last]
    return head(hidden).float()



@torch.inference_mode()
def greedy_generate(model, batch: Sequence[Sequence[int]], pad_id: int, eos_id: int | None,
                    max_new_tokens: int) -> list[list[int]]:
    """Greedy continuation of left-padded prompts with a KV cache; returns the new tokens of each prompt."""
    device = next(model.parameters()).device
    input_ids, mask = pad_batch(batch, pad_id, device, left=True)
    out = model.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                         pad_token_id=pad_id, eos_token_id=eos_id, num_beams=1, temperature=None, top_p=None,
                         top_k=None)
    new = out[:, input_ids.shape[1]:].tolist()
    if eos_id is not None:
        new = [seq[: seq.index(eos_id)] if eos_id in seq else seq for seq in new]
    return new
