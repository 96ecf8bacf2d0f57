"""How far a model's next-token distribution moved from a reference model's on the same token ids.

KL(P || Q) per position, P = the reference (e.g. the base model), Q = the other (e.g. the model with new
embedding rows), summed over P's vocabulary: Q may have more rows (an extended vocabulary), whose probability
mass is mass taken from P's tokens and so counts in the divergence. Zero exactly when Q gives P's tokens P's
probabilities. The documents are scored as in cpt.measure.bpb: BOS + ids, windows of `max_length` tokens that
overlap by one; every position that predicts a next token counts once. Both models see the same ids (which must be
valid for both: for an extended tokenizer, English ids are the base tokenizer's).
"""

from __future__ import annotations

from typing import Sequence

import torch


@torch.inference_mode()
def _log_probs(model, ids: torch.Tensor, mask: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
               n_vocab: int) -> torch.Tensor:
    """float64 log-softmax of the model's logits at positions (rows, cols), over its whole vocabulary, keeping the
    first `n_vocab` entries."""
    from cpt.measure.batching import split_model

    base, head = split_model(model)
    hidden = base(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
    logits = head(hidden[rows, cols]).double()
    return torch.log_softmax(logits, dim=-1)[:, :n_vocab]


def next_token_kl(model_p, model_q, docs: Sequence[Sequence[int]], bos: int | None, max_length: int,
                  pad_id: int, max_batch_tokens: int = 4096) -> dict:
    """Mean, max and total of KL(P || Q) (nats) over every predicting position of `docs` (token ids, no BOS)."""
    from cpt.measure.batching import length_batches, pad_batch
    from cpt.measure.bpb import windows

    device = next(model_q.parameters()).device
    wins = [w for d in docs for w in windows(list(d), bos, max_length)]
    n_vocab = model_p.get_output_embeddings().weight.shape[0]
    total, worst, count = 0.0, 0.0, 0
    for idx in length_batches([len(w) for w in wins], max_batch_tokens, 64):
        batch = [wins[i] for i in idx]
        ids, mask = pad_batch(batch, pad_id, device)
        # positions that predict a real next token
        rows, cols = torch.nonzero(mask[:, 1:], as_tuple=True)
        lp = _log_probs(model_p, ids, mask, rows, cols, n_vocab)
        lq = _log_probs(model_q, ids, mask, rows, cols, n_vocab)
        kl = (lp.exp() * (lp - lq)).sum(-1).clamp_min(0.0)
        total += float(kl.sum())
        worst = max(worst, float(kl.max())) if kl.numel() else worst
        count += int(kl.numel())
    return {"positions": count, "mean_kl_nats": total / count if count else float("nan"),
            "max_kl_nats": worst, "total_kl_nats": total}
