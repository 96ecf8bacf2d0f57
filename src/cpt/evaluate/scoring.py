"""Scoring of multiple-choice benchmarks, made fast on CPU: first-token logits (ColossalEval's method, the
default `evaluate.scoring: first_token`) or option log-likelihoods (`letter`, `answer`: cpt.evaluate.likelihood).

For each question: one forward pass of the base transformer over the prompt, the LM head applied to the last
hidden state only, and the prediction = argmax of those logits over the answer-letter tokens. Prompts are
tokenized in batches, sorted by length, and run in batches under a token budget. Questions of one subject share
their instruction and few-shot examples: that common token prefix (found on the actual token ids) is run once
and its key/value cache reused, so each question costs only its own tokens; the rest run left-padded.
With the ColossalEval prompt styles a letter's score is the larger of the logits of its two tokens (the last
token of "Answer: X" and of "答案：X"), as ColossalEval scores it, and the prompt must leave room for the
generated answer (max_length - max_new_tokens). AGIEval's "combined" metric also greedily generates a short
answer: the question counts when either the first-token prediction or that answer is right, the answer's letter
being its first capital A-D not touching a lowercase letter (ColossalEval's exact match). GSM8K is scored on a
generated answer (cpt.evaluate.gsm). Every result carries its answer-letter distribution and majority baseline
(cpt.evaluate.answer_stats) and the questions the protocol left out (`excluded`).
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from dataclasses import dataclass

import torch

from cpt.core.errors import EvalError
from cpt.core.schema import default
from cpt.evaluate import likelihood, protocol
from cpt.evaluate.answer_stats import aggregate, letter_stats
from cpt.evaluate.formats import Benchmark, Question
from cpt.evaluate.forward import greedy_generate, last_position_logits, plan_groups, prefix_cache, suffix_last_logits
from cpt.evaluate.prompts import answer_text, build_parts, few_shot_pool
from cpt.measure.batching import length_batches, pad_token_id


# ------------------------------------------------------------------------------------------------ letter tokens
def letter_token_ids(tokenizer, language: str, letters: str = "ABCD") -> dict[str, int]:
    """Token id of each answer letter: the last token of tokenizing "Answer: X" (en) / "答案：X" (zh)."""
    ids = {}
    for letter in letters:
        enc = tokenizer(answer_text(language, letter), add_special_tokens=False)["input_ids"]
        if not enc:
            raise EvalError(f"tokenizer gives no tokens for {answer_text(language, letter)!r}")
        tok = enc[-1]
        piece = tokenizer.decode([tok]).strip()
        if piece != letter:
            raise EvalError(f"the last token of {answer_text(language, letter)!r} is {tok} ({piece!r}), not the letter "
                            f"{letter}: this tokenizer merges the letter with its context; first-token scoring "
                            f"cannot be applied")
        ids[letter] = tok
    if len(set(ids.values())) != len(ids):
        raise EvalError(f"answer letters share token ids: {ids}")
    return ids


# ------------------------------------------------------------------------------------------------ prompt tokens
@dataclass
class Prompt:
    question: Question
    language: str
    ids: list[int]
    shots: int
    shots_built: int  # examples available before any were dropped for length
    instruction_dropped: bool = False
    question_truncated: bool = False
    prefix_key: str | None = None  # the text before the question; prompts that share it share a token prefix
    text: str | None = None  # the text `ids` tokenize (None when cut from the left)


def _encode(tokenizer, texts: list[str]) -> list[list[int]]:
    if not texts:
        return []
    return tokenizer(texts, add_special_tokens=True)["input_ids"]


def build_prompts(tokenizer, bench: Benchmark, shots: int, max_length: int,
                  limit_per_subject: int | None = None, style: str = "project", mode: str = "first_token"
                  ) -> list[Prompt]:
    """Tokenized prompts of every scored question in `style`, each at most `max_length` tokens; for the
    likelihood modes the cue loses a trailing space (it starts the continuation) and, for `answer`, examples end
    in their answer's text.

    Over-long prompts lose few-shot examples first (farthest from the question first), then the instruction;
    only then is the prompt cut from the left (the question's end and the cue are always kept)."""
    parts, prompts = [], []
    for subject in bench.subjects.values():
        questions = subject.test[:limit_per_subject] if limit_per_subject else subject.test
        for q in questions:
            p = build_parts(bench, subject, q, shots, style, "text" if mode == "answer" else "letter")
            if mode != "first_token":
                p.question = p.question.rstrip(" ")
            parts.append(p)
            prompts.append(Prompt(q, bench.language_of(subject.name), [], len(p.examples), len(p.examples)))
    # round 0: full prompts; then only the over-long ones, one example fewer each round (batched tokenization)
    todo = list(range(len(parts)))
    ids = _encode(tokenizer, [parts[i].text() for i in todo])
    while todo:
        still = []
        for i, enc in zip(todo, ids):
            pr = prompts[i]
            if len(enc) <= max_length:
                pr.ids = enc
                pr.text = parts[i].text(pr.shots, not pr.instruction_dropped)
            elif pr.shots > 0:
                pr.shots -= 1
                still.append(i)
            elif not pr.instruction_dropped and parts[i].instruction:
                pr.instruction_dropped = True
                still.append(i)
            else:
                pr.question_truncated = True
                bos = [enc[0]] if tokenizer.bos_token_id is not None and enc[0] == tokenizer.bos_token_id else []
                pr.ids = bos + enc[len(enc) - (max_length - len(bos)):]
        todo = still
        ids = _encode(tokenizer, [parts[i].text(prompts[i].shots, not prompts[i].instruction_dropped) for i in todo])
    for pr, part in zip(prompts, parts):
        if not pr.question_truncated:
            before = part.text(pr.shots, not pr.instruction_dropped)[: -len(part.question)]
            pr.prefix_key = f"{pr.language}\x00{before}"
    return prompts


def first_letter(text: str, letters: str = "ABCD") -> str | None:
    """The answer letter of a generated text as ColossalEval's exact match reads it: the first capital in
    letters[0]..letters[-1] with no lowercase letter right before or after it ("Answer: B" -> B); None if none."""
    m = re.search(f"(?<![a-z])[{letters[0]}-{letters[-1]}](?![a-z])", text)
    return m.group(0) if m else None


# ------------------------------------------------------------------------------------------------ evaluation
@dataclass
class EvalSettings:
    """How one benchmark is scored; the defaults are the schema's (workflow/schemas/evaluate.schema.yaml)."""
    shots: int  # few-shot examples (the format's published count unless the config says otherwise)
    max_length: int | None = default("evaluate.max_length")  # None: the model's max_position_embeddings
    max_batch_tokens: int = default("evaluate.max_batch_tokens")
    max_batch_size: int = default("evaluate.max_batch_size")
    limit_per_subject: int | None = default("evaluate.limit_per_subject")
    combined: bool = False  # AGIEval: also generate and accept the first letter of the output
    max_new_tokens: int = protocol.MAX_NEW_TOKENS  # generated answer (combined metric; GSM8K: 256)
    keep_predictions: bool = True
    share_prefix: bool = True  # run each shared few-shot prefix once (KV cache), then only the questions
    scoring: str = default("evaluate.scoring")  # first_token, letter or answer (cpt.evaluate.likelihood)
    length_normalize: bool = default("evaluate.length_normalize")  # answer scoring: divide by the characters
    prompt_style: str = default("evaluate.prompt_style")  # project or colossaleval (cpt.evaluate.prompts)


def model_max_length(model, tokenizer=None) -> int:
    n = getattr(model.config, "max_position_embeddings", None)
    if not n:
        raise EvalError(f"{type(model).__name__}: config has no max_position_embeddings; pass max_length")
    return int(n)



def evaluate_benchmark(model, tokenizer, bench: Benchmark, settings: EvalSettings, progress: bool = True) -> dict:
    """Score one benchmark; returns the result dict (accuracy in percent) with per-question predictions."""
    from tqdm import tqdm

    if bench.format == "gsm":
        return evaluate_generated(model, tokenizer, bench, settings, progress)
    t0 = time.time()
    mode = settings.scoring
    likelihood.check_mode(mode)
    max_length = settings.max_length or model_max_length(model)
    room = likelihood.continuation_room(tokenizer, bench, mode, settings.limit_per_subject)
    budget = max_length - room
    if settings.combined or settings.prompt_style in protocol.COLOSSALEVAL_STYLES:
        # the generated answer must fit too (ColossalEval always leaves room for it)
        budget = min(budget, max_length - settings.max_new_tokens)
    prompts = build_prompts(tokenizer, bench, settings.shots, budget, settings.limit_per_subject,
                            settings.prompt_style, mode)
    options = likelihood.plan_options(tokenizer, prompts, [p.text for p in prompts], mode) if room else []
    needed: dict[int, list[int]] = {}
    for o in options:
        if o.from_last_row:
            needed.setdefault(o.prompt, []).append(o.ids[-1])
    last_logprobs: dict[int, dict[int, float]] = {}
    t_tok = time.time() - t0
    letter_ids_cache: dict[tuple[str, str], dict[str, list[int]]] = {}
    both_cues = settings.prompt_style in protocol.COLOSSALEVAL_STYLES

    def letter_ids(p: Prompt) -> dict[str, list[int]]:
        key = ("en+zh" if both_cues else p.language, p.question.letters)
        if key not in letter_ids_cache:
            langs = ("en", "zh") if both_cues else (p.language,)
            per = [letter_token_ids(tokenizer, lang, p.question.letters) for lang in langs]
            letter_ids_cache[key] = {L: sorted({ids[L] for ids in per}) for L in p.question.letters}
        return letter_ids_cache[key]

    pad = pad_token_id(tokenizer)
    lengths = [len(p.ids) for p in prompts]
    logits_over: list[dict[str, float] | None] = [None] * len(prompts)

    def record(i: int, row: torch.Tensor) -> None:
        if mode != "first_token":  # the log-probabilities of the one-token continuations
            if i in needed:
                logp = torch.log_softmax(row, dim=-1)
                last_logprobs[i] = {t: float(logp[t]) for t in needed[i]}
            return
        logits_over[i] = {L: max(row[ids].tolist()) for L, ids in letter_ids(prompts[i]).items()}

    groups, alone = plan_groups(prompts) if settings.share_prefix else ([], list(range(len(prompts))))
    if mode != "first_token":  # only the prompts with a one-token continuation need their last logits
        groups = [g for g in groups if any(m in needed for m in g.members)]
        alone = [i for i in alone if i in needed]
    n_batches = 0
    bar = tqdm(total=len(prompts), desc=f"evaluate {bench.name}", unit="q", disable=not progress, leave=False)
    for g in groups:
        cache = prefix_cache(model, g.prefix)
        for idx in length_batches([len(x) for x in g.suffixes], settings.max_batch_tokens, settings.max_batch_size):
            logits = suffix_last_logits(model, cache, len(g.prefix), [g.suffixes[j] for j in idx], pad)
            for row, j in enumerate(idx):
                record(g.members[j], logits[row])
            n_batches += 1
            bar.update(len(idx))
    for idx in length_batches([lengths[i] for i in alone], settings.max_batch_tokens, settings.max_batch_size):
        logits = last_position_logits(model, [prompts[alone[j]].ids for j in idx], pad)
        for row, j in enumerate(idx):
            record(alone[j], logits[row])
        n_batches += 1
        bar.update(len(idx))
    bar.close()
    if mode != "first_token":
        scores = likelihood.score_options(model, options, last_logprobs, pad, settings.max_batch_tokens,
                                          settings.max_batch_size)
        logits_over = likelihood.option_scores(options, scores, len(prompts), settings.length_normalize)

    generated: list[str | None] = [None] * len(prompts)
    if settings.combined:
        eos = tokenizer.eos_token_id
        gbatches = length_batches(lengths, settings.max_batch_tokens, settings.max_batch_size)
        for idx in tqdm(gbatches, desc=f"generate {bench.name}", disable=not progress, leave=False):
            outs = greedy_generate(model, [prompts[i].ids for i in idx], pad, eos, settings.max_new_tokens)
            for i, seq in zip(idx, outs):
                generated[i] = tokenizer.decode(seq, skip_special_tokens=True)

    records = []
    for i, p in enumerate(prompts):
        scores = logits_over[i]
        pred = max(scores, key=lambda k: (scores[k], -ord(k)))  # ties -> earliest letter
        rec = {
            "id": p.question.qid, "subject": p.question.subject, "answer": p.question.answer, "pred": pred,
            "correct": pred == p.question.answer,
            ("logits" if mode == "first_token" else "loglik"): {k: round(v, 5) for k, v in scores.items()},
            "tokens": len(p.ids), "shots": p.shots,
        }
        if settings.combined:
            gen_letter = first_letter(generated[i] or "", p.question.letters)
            rec["generated"] = generated[i]
            rec["generated_letter"] = gen_letter
            rec["correct_combined"] = rec["correct"] or gen_letter == p.question.answer
        records.append(rec)

    seconds = time.time() - t0
    result = {"benchmark": bench.name, "format": bench.format, "language": bench.language, "split": bench.split,
              "scoring": mode, "prompt_style": settings.prompt_style}
    if mode == "answer":
        result["length_normalize"] = settings.length_normalize
    result.update(aggregate(records))
    result.update(letter_stats(records))
    if settings.combined:
        comb = aggregate(records, key="correct_combined")
        result["first_token"] = {k: result[k] for k in ("correct", "accuracy", "macro_accuracy")}
        result["combined"] = {k: comb[k] for k in ("correct", "accuracy", "macro_accuracy")}
        result["combined"]["subjects"] = comb["subjects"]
        # the benchmark's headline number is the combined one (ColossalEval's AGIEval metric)
        result["accuracy"], result["correct"] = comb["accuracy"], comb["correct"]
        result["macro_accuracy"] = comb["macro_accuracy"]
    sources = Counter(few_shot_pool(s)[1] for s in bench.subjects.values()) if settings.shots else Counter()
    result.update({
        "shots": settings.shots,
        "few_shot_source": ("none" if not settings.shots else
                            next(iter(sources)) if len(sources) == 1 else "mixed"),
        "skipped": dict(sorted(bench.skipped.items())),
        "excluded": dict(sorted(bench.excluded.items())),
        "excluded_total": sum(bench.excluded.values()),
        "prompts": {
            "max_length": max_length,
            "mean_tokens": (sum(lengths) / len(lengths)) if lengths else 0.0,
            "max_tokens": max(lengths, default=0),
            "total_tokens": sum(lengths),
            "fewer_shots": sum(p.shots < p.shots_built for p in prompts),
            "instruction_dropped": sum(p.instruction_dropped for p in prompts),
            "question_truncated": sum(p.question_truncated for p in prompts),
        },
        "letter_tokens": {f"{lang}:{letters}": ids for (lang, letters), ids in sorted(letter_ids_cache.items())},
        "batches": n_batches,
        "shared_prefix_groups": len(groups),
        "computed_tokens": sum(len(g.prefix) + sum(len(x) for x in g.suffixes) for g in groups)
        + sum(lengths[i] for i in alone) + sum(len(o.ids) for o in options if not o.from_last_row),
        "option_forwards": sum(not o.from_last_row for o in options),
        "seconds": round(seconds, 3),
        "tokenize_seconds": round(t_tok, 3),
        "questions_per_s": round(len(prompts) / seconds, 3) if seconds > 0 else math.inf,
        "tokens_per_s": round(sum(lengths) / seconds, 1) if seconds > 0 else math.inf,
    })
    if settings.keep_predictions:
        result["predictions"] = records
    return result


# ------------------------------------------------------------------------------------------------ generated answers
def evaluate_generated(model, tokenizer, bench: Benchmark, settings: EvalSettings, progress: bool = True) -> dict:
    """GSM8K: greedy answers to the published 8-shot prompt, checked with cpt.evaluate.gsm's rule; the result
    has the accuracy (percent) and per-question predictions (generation, extracted answer, gold)."""
    from tqdm import tqdm

    from cpt.evaluate import gsm

    t0 = time.time()
    max_length = settings.max_length or model_max_length(model)
    new_tokens = settings.max_new_tokens
    prompts = build_prompts(tokenizer, bench, settings.shots, max_length - new_tokens, settings.limit_per_subject,
                            settings.prompt_style, "first_token")
    pad, eos = pad_token_id(tokenizer), tokenizer.eos_token_id
    lengths = [len(p.ids) for p in prompts]
    generated: list[str] = [""] * len(prompts)
    batches = length_batches(lengths, settings.max_batch_tokens, settings.max_batch_size)
    for idx in tqdm(batches, desc=f"generate {bench.name}", disable=not progress, leave=False):
        outs = greedy_generate(model, [prompts[i].ids for i in idx], pad, eos, new_tokens)
        for i, seq in zip(idx, outs):
            generated[i] = tokenizer.decode(seq, skip_special_tokens=True).strip()
    records = []
    for p, text in zip(prompts, generated):
        got = gsm.extract_answer(text)
        records.append({"id": p.question.qid, "subject": p.question.subject, "generated": text,
                        "answer": gsm.gold_answer(p.question.answer), "pred": got,
                        "correct": gsm.is_correct(text, p.question.answer), "tokens": len(p.ids),
                        "shots": p.shots})
    seconds = time.time() - t0
    result = {"benchmark": bench.name, "format": bench.format, "language": bench.language, "split": bench.split,
              "scoring": "generated", "prompt_style": settings.prompt_style, "max_new_tokens": new_tokens}
    result.update(aggregate(records))
    result.update({
        "no_number": sum(r["pred"] is None for r in records),
        "shots": settings.shots, "few_shot_source": "published" if settings.shots else "none",
        "skipped": dict(sorted(bench.skipped.items())),
        "excluded": dict(sorted(bench.excluded.items())), "excluded_total": sum(bench.excluded.values()),
        "prompts": {"max_length": max_length, "mean_tokens": (sum(lengths) / len(lengths)) if lengths else 0.0,
                    "max_tokens": max(lengths, default=0), "total_tokens": sum(lengths),
                    "fewer_shots": sum(p.shots < p.shots_built for p in prompts),
                    "question_truncated": sum(p.question_truncated for p in prompts)},
        "seconds": round(seconds, 3),
        "questions_per_s": round(len(prompts) / seconds, 3) if seconds > 0 else math.inf,
    })
    if settings.keep_predictions:
        result["predictions"] = records
    return result
