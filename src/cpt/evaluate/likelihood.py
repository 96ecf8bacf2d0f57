"""Log-likelihood scoring of multiple-choice options (`evaluate.scoring: letter | answer`).

- ``letter`` (lm-evaluation-harness's MMLU): the score of option X is log P(" X" | prompt), the continuation being
  the answer letter after the cue ("Answer:" + " A"; Chinese "答案：" + "A").
- ``answer``: log P(" <text of option X>" | prompt), the full answer text; the few-shot examples then end in the
  text of their correct option. With `length_normalize` the score is divided by the number of characters of the
  continuation (lm-evaluation-harness's acc_norm), so long options are not penalised for their length.

The continuation's tokens are found as lm-evaluation-harness finds them: tokenize prompt + continuation as one
text and take the tokens after the prompt's own token count (`whole[len(prompt):]`); the scored sequence is that
whole tokenization. A continuation of one token whose prompt tokens are unchanged is scored from the prompt's
last-position logits (already computed, with the shared few-shot prefix); longer ones get one forward pass of
the whole sequence each (batched, right-padded, the LM head applied only at the continuation's positions).
The prediction is the option with the highest score (ties: the earliest letter).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from cpt.core.errors import EvalError
from cpt.evaluate.prompts import CUE, CUE_SEPARATOR, choice_text

MODES = ("first_token", "letter", "answer")


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise EvalError(f"config key evaluate.scoring: {mode!r} is not one of {', '.join(MODES)}")


def continuation_text(language: str, q, letter: str, mode: str) -> str:
    """What follows the prompt for option `letter`: " A" / "A" (letter) or " <option text>" (answer)."""
    body = letter if mode == "letter" else choice_text(q, letter)
    return CUE_SEPARATOR[language] + body


def continuation_room(tokenizer, bench, mode: str, limit_per_subject: int | None) -> int:
    """The most tokens a continuation of this benchmark takes (prompts are built this much shorter)."""
    if mode == "first_token":
        return 0
    texts = {}
    for subject in bench.subjects.values():
        for q in (subject.test[:limit_per_subject] if limit_per_subject else subject.test):
            lang = bench.language_of(subject.name)
            for letter in q.letters:
                texts[CUE[lang] + continuation_text(lang, q, letter, mode)] = CUE[lang]
    if not texts:
        return 0
    full = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    cues = {c: len(tokenizer(c, add_special_tokens=False)["input_ids"]) for c in set(texts.values())}
    return max(len(ids) - cues[c] for ids, c in zip(full, texts.values())) + 1


@dataclass
class Option:
    prompt: int  # index into the prompt list
    letter: str
    text: str  # the continuation text
    ids: list[int]  # the whole scored sequence (prompt + continuation tokens)
    n_cont: int  # continuation tokens at the end of `ids`
    from_last_row: bool  # one token after the unchanged prompt: scored from the prompt's last logits


def plan_options(tokenizer, prompts: Sequence, texts: Sequence[str], mode: str) -> list[Option]:
    """Every (prompt, option) with its tokens. `texts[i]` is the text prompt i was tokenized from (None when it
    was cut from the left; then the continuation's tokens come from tokenizing the cue + continuation)."""
    opts: list[Option] = []
    wholes: list[str] = []
    where: list[int] = []
    for i, (p, text) in enumerate(zip(prompts, texts)):
        for letter in p.question.letters:
            cont = continuation_text(p.language, p.question, letter, mode)
            opts.append(Option(i, letter, cont, [], 0, False))
            if text is not None:
                wholes.append(text + cont)
                where.append(len(opts) - 1)
    enc = tokenizer(wholes, add_special_tokens=True)["input_ids"] if wholes else []
    for k, ids in zip(where, enc):
        o = opts[k]
        o.ids, o.n_cont = list(ids), len(ids) - len(prompts[o.prompt].ids)
    for o in opts:
        p = prompts[o.prompt]
        if not o.ids:  # truncated prompt: the continuation tokens of cue + continuation, after the prompt's ids
            cue = tokenizer(CUE[p.language], add_special_tokens=False)["input_ids"]
            full = tokenizer(CUE[p.language] + o.text, add_special_tokens=False)["input_ids"]
            o.ids, o.n_cont = p.ids + full[len(cue):], len(full) - len(cue)
        if o.n_cont < 1:
            raise EvalError(f"{p.question.source_line}: the continuation {o.text!r} adds no token after the prompt "
                            f"under this tokenizer; it cannot be scored by log-likelihood")
        o.from_last_row = o.n_cont == 1 and o.ids[:-1] == p.ids
    return opts


@torch.inference_mode()
def continuation_logprobs(model, batch: Sequence[tuple[Sequence[int], int]], pad_id: int) -> list[float]:
    """Sum of log P(token | preceding tokens) over the last n tokens of each (ids, n) sequence; one forward pass
    over the right-padded batch, the LM head applied to the continuation positions only."""
    from cpt.measure.batching import split_model

    base, head = split_model(model)
    device = next(model.parameters()).device
    width = max(len(ids) for ids, _ in batch)
    ids_t = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for r, (ids, _) in enumerate(batch):
        ids_t[r, : len(ids)] = torch.as_tensor(list(ids), dtype=torch.long)
        mask[r, : len(ids)] = 1
    ids_t, mask = ids_t.to(device), mask.to(device)
    hidden = base(input_ids=ids_t, attention_mask=mask, use_cache=False).last_hidden_state
    out = []
    for r, (ids, n) in enumerate(batch):
        pos = torch.arange(len(ids) - n - 1, len(ids) - 1, device=device)
        logp = torch.log_softmax(head(hidden[r, pos]).float(), dim=-1)
        out.append(float(logp[torch.arange(n, device=device), ids_t[r, pos + 1]].double().sum()))
    return out


def score_options(model, opts: list[Option], last_logprobs: dict[int, torch.Tensor], pad_id: int,
                  max_batch_tokens: int, max_batch_size: int) -> list[float]:
    """The log-likelihood of each option: from `last_logprobs[prompt]` (log-softmax of its last position) when
    `from_last_row`, else from a forward pass of its whole sequence."""
    from cpt.measure.batching import length_batches

    scores = [0.0] * len(opts)
    rest = []
    for k, o in enumerate(opts):
        if o.from_last_row:
            scores[k] = float(last_logprobs[o.prompt][o.ids[-1]])
        else:
            rest.append(k)
    for idx in length_batches([len(opts[k].ids) for k in rest], max_batch_tokens, max_batch_size):
        vals = continuation_logprobs(model, [(opts[rest[j]].ids, opts[rest[j]].n_cont) for j in idx], pad_id)
        for j, v in zip(idx, vals):
            scores[rest[j]] = v
    return scores


def option_scores(opts: list[Option], scores: list[float], n_prompts: int, length_normalize: bool
                  ) -> list[dict[str, float]]:
    """Per prompt: letter -> score (log-likelihood, divided by the continuation's characters when normalised)."""
    out: list[dict[str, float]] = [{} for _ in range(n_prompts)]
    for o, s in zip(opts, scores):
        out[o.prompt][o.letter] = s / max(len(o.text), 1) if length_normalize else s
    return out
