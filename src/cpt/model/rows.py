"""The init math: the rows of new tokenizer pieces by method (`model.init.method`), in float32/float64, rounded once
to the source dtype. See cpt.model.init for the methods' definitions."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Sequence

from cpt.core.errors import ModelError
from cpt.model.vocab import open_model_tokenizer

if TYPE_CHECKING:
    import torch

METHODS = ("subword_mean", "mean", "multivariate", "mean_noise", "subword_mean_norm")
SUBWORD_METHODS = ("subword_mean", "subword_mean_norm")  # need each new piece's old token ids
SEEDED_METHODS = ("multivariate", "mean_noise")
ROW_CHUNK = 4096


def old_token_ids(old_tokenizer_dir: str | os.PathLike, pieces: Sequence[str], dummy_prefix: bool
                  ) -> list[list[int]]:
    """Ids of each piece's text under the OLD tokenizer (no bos/eos), all pieces in one batch call (the family's
    subword_ids: SentencePiece with or without its dummy prefix; byte-level BPE: the old merges on the piece)."""
    return open_model_tokenizer(old_tokenizer_dir).subword_ids(list(pieces), dummy_prefix=dummy_prefix)


def row_mean(W) -> "torch.Tensor":
    """float64 mean of the rows of W: float32 partial sums of 64 rows, summed in float64 (fast, ~1e-7 relative)."""
    import torch

    W = W.to(torch.float32)
    n, d = W.shape
    full = n - n % 64
    acc = W[:full].view(-1, 64, d).sum(1).to(torch.float64).sum(0) if full else torch.zeros(d, dtype=torch.float64)
    if full < n:
        acc += W[full:].sum(0).to(torch.float64)
    return acc / n


def row_covariance(W, mu) -> "torch.Tensor":
    """float64 sample covariance (n - 1) of the rows of W: float32 products of centred row chunks, summed in float64."""
    import torch

    d = W.shape[1]
    mu32 = mu.to(torch.float32)
    acc = torch.zeros(d, d, dtype=torch.float64)
    for s in range(0, W.shape[0], ROW_CHUNK):
        x = W[s:s + ROW_CHUNK].to(torch.float32) - mu32
        acc += (x.T @ x).to(torch.float64)
    return acc / max(W.shape[0] - 1, 1)


def subword_mean_rows(W, id_lists: Sequence[Sequence[int]], fallback) -> tuple["torch.Tensor", int]:
    """float32 (n_new, d): mean of W's rows at each id list (repeats count); empty lists get `fallback`.

    Vectorised: one embedding_bag over all new rows at once (sum in float32, then divided by the list length),
    no per-row Python work on tensors and no (rows, k, d) intermediate.
    """
    import torch
    import torch.nn.functional as F

    W = W.to(torch.float32)
    lengths = torch.tensor([len(x) for x in id_lists], dtype=torch.long)
    flat = torch.tensor([i for x in id_lists for i in x], dtype=torch.long)
    offsets = torch.zeros(len(id_lists), dtype=torch.long)
    if len(id_lists) > 1:
        offsets[1:] = lengths[:-1].cumsum(0)
    out = F.embedding_bag(flat, W, offsets, mode="sum")
    empty = lengths == 0
    out /= lengths.clamp_min(1).to(torch.float32).unsqueeze(1)
    n_empty = int(empty.sum())
    if n_empty:
        out[empty] = fallback.to(torch.float32)
    return out, n_empty


def mean_noise_rows(W, n_new: int, seed: int, scale: float, mu=None) -> "torch.Tensor":
    """float32 (n_new, d): mean + scale * sigma * z, sigma the per-dimension standard deviation of W's rows
    (n - 1), z = torch.randn(n_new, d, generator=manual_seed(seed), float32); computed in float64."""
    import torch

    mu = row_mean(W) if mu is None else mu
    sigma = row_covariance(W, mu).diagonal().clamp_min(0).sqrt()
    g = torch.Generator().manual_seed(int(seed))
    z = torch.randn(n_new, W.shape[1], generator=g, dtype=torch.float32)
    return (mu + float(scale) * sigma * z.to(torch.float64)).to(torch.float32)


def subword_mean_norm_rows(W, id_lists: Sequence[Sequence[int]], fallback) -> tuple["torch.Tensor", int]:
    """float32 (n_new, d): the subword mean rescaled to the mean norm of the rows it averages. Averaging k
    rows that point different ways shrinks the norm (about 1/sqrt(k) for unrelated rows), so plain subword-mean
    rows are shorter than the rows of real tokens; this keeps the mean's direction and restores the length.
    Empty lists get `fallback` (unscaled); a zero mean stays zero."""
    import torch

    rows, n_empty = subword_mean_rows(W, id_lists, fallback)
    norms = W.to(torch.float32).norm(dim=1)
    lengths = [len(x) for x in id_lists]
    flat = torch.tensor([i for x in id_lists for i in x], dtype=torch.long)
    seg = torch.repeat_interleave(torch.arange(len(id_lists)), torch.tensor(lengths, dtype=torch.long))
    target = torch.zeros(len(id_lists), dtype=torch.float32).index_add_(0, seg, norms[flat])
    target /= torch.tensor(lengths, dtype=torch.float32).clamp_min(1)
    have = rows.norm(dim=1)
    ok = (torch.tensor(lengths) > 0) & (have > 0)
    rows[ok] *= (target[ok] / have[ok]).unsqueeze(1)
    return rows, n_empty


def multivariate_rows(W, n_new: int, seed: int, scale: float = 1.0, mu=None) -> "torch.Tensor":
    """float32 (n_new, d) samples of N(mean, scale * cov) of W's rows (see the module docstring for the exact recipe)."""
    import torch

    mu = row_mean(W) if mu is None else mu
    cov = row_covariance(W, mu) * float(scale)
    L, info = torch.linalg.cholesky_ex(cov)
    ridge = 1e-10 * float(cov.diagonal().mean().clamp_min(1e-30))
    while int(info) != 0:
        L, info = torch.linalg.cholesky_ex(cov + ridge * torch.eye(cov.shape[0], dtype=cov.dtype))
        ridge *= 10
    g = torch.Generator().manual_seed(int(seed))
    z = torch.randn(n_new, W.shape[1], generator=g, dtype=torch.float32)
    out = torch.empty(n_new, W.shape[1], dtype=torch.float32)
    for s in range(0, n_new, ROW_CHUNK):
        out[s:s + ROW_CHUNK] = (mu + z[s:s + ROW_CHUNK].to(torch.float64) @ L.T).to(torch.float32)
    return out


def extend_matrix(W_old, n_total: int, n_tok: int, method: str, *, id_lists=None, seed: int = 0,
                  scale: float = 1.0, noise_scale: float = 0.0) -> tuple["torch.Tensor", dict]:
    """(n_total, d) matrix in W_old's dtype: old rows as they are, new rows by `method`, padded rows = mean."""
    import torch

    if method not in METHODS:
        raise ModelError(f"model.init.method: {method!r} unknown; use one of {', '.join(METHODS)}")
    n_old, d = W_old.shape
    n_new = n_tok - n_old
    out = torch.empty(n_total, d, dtype=W_old.dtype)
    out[:n_old] = W_old
    W32 = W_old.to(torch.float32)  # one conversion; a no-op view for float32 sources
    mu = row_mean(W32)
    info: dict[str, Any] = {}
    if n_new > 0:
        if method in SUBWORD_METHODS:
            if id_lists is None or len(id_lists) != n_new:
                raise ModelError(f"{method} needs one id list per new piece ({n_new})")
            fn = subword_mean_rows if method == "subword_mean" else subword_mean_norm_rows
            rows, n_empty = fn(W32, id_lists, mu)
            info["empty_fallback"] = n_empty
        elif method == "mean":
            rows = mu.to(torch.float32).expand(n_new, d)
        elif method == "mean_noise":
            rows = mean_noise_rows(W32, n_new, seed, noise_scale, mu=mu)
        else:
            rows = multivariate_rows(W32, n_new, seed, scale, mu=mu)
        out[n_old:n_tok] = rows.to(W_old.dtype)
        del rows
    del W32
    if n_total > n_tok:
        out[n_tok:] = mu.to(W_old.dtype)
    return out, info


def padded_size(n: int, multiple: int | None) -> int:
    if not multiple:
        return n
    return -(-n // int(multiple)) * int(multiple)

