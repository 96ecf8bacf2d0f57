"""cpt.dataset.buckets: near-equal token bins per category after a seeded shuffle; bucket i = bin i of every category."""

from __future__ import annotations

import numpy as np
import pytest

from cpt.core.errors import ConfigError
from cpt.dataset.buckets import Selection, bucket_rows, rng_for, split_into_bins, stable_int, take_tokens


@pytest.mark.parametrize("n, num_bins", [(1000, 10), (37, 10), (5, 10), (0, 3), (200, 1)])
def test_bins_cover_every_row_once_with_near_equal_tokens(n, num_bins):
    rng = np.random.default_rng(n)
    lengths = rng.integers(1, 3000, size=n)
    bins = split_into_bins(lengths, num_bins, seed=7)
    assert len(bins) == num_bins
    flat = np.concatenate(bins) if n else np.zeros(0)
    assert sorted(flat.tolist()) == list(range(n))
    if n:
        target = lengths.sum() / num_bins
        for b in bins:
            assert abs(lengths[b].sum() - target) <= lengths.max(), (lengths[b].sum(), target)


def test_bins_are_seeded():
    lengths = np.arange(1, 501)
    a = split_into_bins(lengths, 10, seed=1)
    b = split_into_bins(lengths, 10, seed=1)
    c = split_into_bins(lengths, 10, seed=2)
    assert all((x == y).all() for x, y in zip(a, b))
    assert any(len(x) != len(y) or (x != y).any() for x, y in zip(a, c))


def test_bucket_i_holds_a_tenth_of_every_category():
    rng = np.random.default_rng(3)
    sels = {}
    for cat, n, hi in (("zh", 3000, 800), ("en", 1200, 3000), ("code", 400, 200)):
        lengths = rng.integers(1, hi, size=n)
        rows = rng.permutation(n) + 10    # selections carry table rows, not 0..n-1
        sels[cat] = Selection(cat, rows, lengths)
    buckets = bucket_rows(sels, 10, seed=5, stage="s")
    assert len(buckets) == 10
    for cat, sel in sels.items():
        lookup = dict(zip(sel.rows.tolist(), sel.lengths.tolist()))
        share = [sum(lookup[r] for r in b[cat].tolist()) / sel.tokens for b in buckets]
        assert all(abs(s - 0.1) < 0.1 * 0.1 for s in share), (cat, share)
        assert sorted(np.concatenate([b[cat] for b in buckets]).tolist()) == sorted(sel.rows.tolist())


def test_helpers():
    assert stable_int("a", 1) == stable_int("a", 1) != stable_int("a", 2)
    assert rng_for(1, "x").integers(1 << 30) == rng_for(1, "x").integers(1 << 30)
    assert take_tokens(np.arange(5), np.array([3, 3, 3, 3, 3]), 10) == 3
    assert take_tokens(np.arange(5), np.array([3, 3, 3, 3, 3]), 0) == 0
    with pytest.raises(ConfigError, match="num_bins"):
        split_into_bins(np.arange(3), 0, seed=1)
