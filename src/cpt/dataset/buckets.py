"""Bucket-based training data: every category split into N bins of near-equal token counts, bucket i = bin i of
every category (the recipe's "bucket-based training"; the reference describes it but slices globally).

Only lengths and row numbers live here (memory: a few bytes per document); the tokens stay in the memory-mapped
tokenized arrow files (cpt.dataset.shards). The training-side sampler that walks buckets in order lives in cpt.train.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from cpt.core.errors import ConfigError


def stable_int(*parts) -> int:
    """A 64-bit integer from strings/ints, the same on every machine and Python (unlike hash())."""
    h = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(h[:8], "little")


def rng_for(seed: int, *purpose) -> np.random.Generator:
    """A numpy Generator for one purpose (e.g. ("bins", "zh_news")): independent streams, one seed in config."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed) & (2**63 - 1),
                                                                        stable_int(*purpose)])))


def split_into_bins(lengths: np.ndarray, num_bins: int, seed: int, purpose=("bins",)) -> list[np.ndarray]:
    """Row indices of each bin: a seeded shuffle, then cuts at near-equal cumulative token counts.

    A document goes to the bin that holds the midpoint of its tokens, so every bin's token count is within one
    document length of total / num_bins. Rows inside a bin keep the shuffled order.
    """
    if num_bins < 1:
        raise ConfigError(f"dataset.num_bins must be >= 1, got {num_bins}")
    lengths = np.asarray(lengths, dtype=np.int64)
    n = len(lengths)
    if n == 0:
        return [np.zeros(0, dtype=np.int64) for _ in range(num_bins)]
    perm = rng_for(seed, *purpose).permutation(n)
    shuffled = lengths[perm]
    total = int(shuffled.sum())
    ends = np.cumsum(shuffled)
    mids = ends - shuffled / 2.0
    which = np.minimum((mids * num_bins / max(total, 1)).astype(np.int64), num_bins - 1)
    # which is non-decreasing along the shuffled order, so each bin is one contiguous run of perm
    cuts = np.searchsorted(which, np.arange(num_bins + 1), side="left")
    return [perm[cuts[i]:cuts[i + 1]] for i in range(num_bins)]


@dataclass
class Selection:
    """Rows (of one category's tokenized table) chosen for a stage, in the seeded order, with their lengths."""

    category: str
    rows: np.ndarray
    lengths: np.ndarray

    @property
    def tokens(self) -> int:
        return int(self.lengths.sum())


def take_tokens(rows: np.ndarray, lengths: np.ndarray, budget: int) -> int:
    """How many leading rows fit into a token budget (whole documents; at least 0)."""
    if budget <= 0 or len(rows) == 0:
        return 0
    cum = np.cumsum(lengths)
    return int(np.searchsorted(cum, budget, side="right"))


def bucket_rows(selections: dict[str, Selection], num_bins: int, seed: int, stage: str) -> list[dict[str, np.ndarray]]:
    """Bucket i = {category: rows of bin i of that category}."""
    buckets: list[dict[str, np.ndarray]] = [dict() for _ in range(num_bins)]
    for cat in sorted(selections):
        sel = selections[cat]
        bins = split_into_bins(sel.lengths, num_bins, seed, purpose=("bins", stage, cat))
        for i, b in enumerate(bins):
            buckets[i][cat] = sel.rows[b]
    return buckets
