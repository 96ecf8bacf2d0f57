"""Bits per byte and perplexity of a causal LM on held-out text, per language (zh / en) and per category.

bpb = (total negative log-likelihood in nats) / ln 2 / (total UTF-8 bytes of the scored text). Unlike perplexity
it does not depend on the tokenizer, so a model with the 32,000-piece LLaMA-2 vocabulary and one with the
extended vocabulary are compared on the same scale: the forgetting (en) / injection (zh) curve over stages.

Every model is scored on exactly the same text, whatever its tokenizer: the spans are chosen on the text alone
(`select_spans`: whole held-out documents in file order until a byte budget, the document that crosses it cut to
the budget at a character boundary), so a base model and its vocabulary-extended successor are compared on the
same bytes. The result names how many bytes each figure covers and a digest of the spans (`text_sha256`), equal
for every model scored on the same held-out files.

Each span is scored as <start> + tokens(span), <start> being the tokenizer's BOS (its EOS when it has none), so
every token of the span is predicted exactly once: long spans are cut into windows of `max_length` tokens that
overlap by one token (the last token of a window is the first input of the next).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import time
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Mapping

import torch

from cpt.artifacts.corpus import category_files, record_text
from cpt.artifacts.dataset import IGNORE_INDEX
from cpt.artifacts.records import iter_json_objects
from cpt.core.errors import EvalError, RecordError
from cpt.measure.batching import pad_batch

LN2 = math.log(2.0)
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")



def read_texts(path: str | os.PathLike) -> Iterable[str]:
    for i, rec in iter_json_objects(path):
        if "target" not in rec:
            raise RecordError(path, i, "missing_target", "record has no 'target' field")
        text = record_text(rec)
        if text:
            yield text


def detect_language(texts: Iterable[str], sample_chars: int = 20000) -> str:
    """'zh' when at least 30% of the first characters are Han characters, else 'en'."""
    buf = []
    n = 0
    for t in texts:
        buf.append(t)
        n += len(t)
        if n >= sample_chars:
            break
    s = "".join(buf)[:sample_chars]
    letters = sum(1 for ch in s if not ch.isspace())
    return "zh" if letters and len(_HAN.findall(s)) / letters >= 0.3 else "en"


def select_spans(texts: Iterable[str], max_bytes: int | None) -> list[str]:
    """The spans to score, chosen on the text alone (the same for every tokenizer): whole documents in order while
    their UTF-8 bytes fit in `max_bytes`; the document that crosses the budget is cut to the bytes left at a
    character boundary (dropped when not even one character fits), and nothing after it. None: every document."""
    spans, used = [], 0
    for text in texts:
        if not text:
            continue
        n = len(text.encode("utf-8"))
        if max_bytes is None or used + n <= max_bytes:
            spans.append(text)
            used += n
            continue
        left = max_bytes - used
        cut = text.encode("utf-8")[:left].decode("utf-8", errors="ignore")
        if cut:
            spans.append(cut)
        break
    return spans


def spans_digest(spans: Iterable[str]) -> str:
    """sha256 of the spans (each prefixed by its byte length): equal digests = identical scored bytes."""
    h = hashlib.sha256()
    for s in spans:
        b = s.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def start_token(tokenizer) -> int:
    """The token every span is scored after: BOS, else EOS (so that a span's first token is predicted too)."""
    for cand in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if cand is not None:
            return int(cand)
    raise EvalError(f"{type(tokenizer).__name__}: neither a BOS nor an EOS token to start a span with; bits per byte "
                    f"would leave each span's first token unscored")


def tokenize_documents(tokenizer, texts: list[str], max_tokens: int | None = None) -> tuple[list[list[int]], int, int]:
    """Token ids (no BOS) of each document and the UTF-8 bytes they cover. With `max_tokens` (the init report's
    fixed token count; never the held-out bits per byte, which fixes bytes) the documents stop there, the last
    one's bytes counted up to the end of its last scored token (fast tokenizer offsets).

    Returns (ids per document, bytes covered, documents fully or partly used)."""
    docs, nbytes, total = [], 0, 0
    batch = 64
    for start in range(0, len(texts), batch):
        chunk = texts[start:start + batch]
        enc = tokenizer(chunk, add_special_tokens=False, return_offsets_mapping=max_tokens is not None)
        offsets_all = enc["offset_mapping"] if max_tokens is not None else [None] * len(chunk)
        for text, ids, offsets in zip(chunk, enc["input_ids"], offsets_all):
            if not ids:
                if text:
                    raise EvalError(f"{type(tokenizer).__name__} gives no tokens for a text of {len(text)} characters")
                continue
            if max_tokens is not None and total + len(ids) > max_tokens:
                keep = max_tokens - total
                if keep <= 0:
                    return docs, nbytes, len(docs)
                ids = ids[:keep]
                end = offsets[keep - 1][1]
                nbytes += len(text[:end].encode("utf-8"))
                docs.append(ids)
                return docs, nbytes, len(docs)
            docs.append(ids)
            nbytes += len(text.encode("utf-8"))
            total += len(ids)
    return docs, nbytes, len(docs)


def windows(ids: list[int], bos: int | None, max_length: int) -> list[list[int]]:
    """BOS + ids cut into windows of at most max_length tokens overlapping by one (each target scored once)."""
    seq = ([bos] if bos is not None else []) + ids
    if len(seq) < 2:
        return []
    out, start = [], 0
    while start < len(seq) - 1:
        out.append(seq[start:start + max_length])
        start += max_length - 1
    return out



@torch.inference_mode()
def window_nll(model, batch: list[list[int]], pad_id: int, chunk: int = 512) -> list[float]:
    """Sum of next-token NLL (nats) over each window (targets = ids[1:]); right-padded batch; the LM head is
    applied to at most `chunk` positions at a time so full-vocabulary logits are never held for all of them."""
    from cpt.measure.batching import split_model

    base, head = split_model(model)
    device = next(model.parameters()).device
    ids, mask = pad_batch(batch, pad_id, device)
    hidden = base(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state[:, :-1]
    targets = ids[:, 1:].clone()
    targets[mask[:, 1:] == 0] = IGNORE_INDEX
    flat_h = hidden.reshape(-1, hidden.shape[-1])
    flat_t = targets.reshape(-1)
    losses = torch.zeros(flat_t.shape[0], dtype=torch.float64, device=device)
    for s in range(0, flat_t.shape[0], chunk):
        t = flat_t[s:s + chunk]
        if (t != IGNORE_INDEX).any():
            logits = head(flat_h[s:s + chunk]).float()
            losses[s:s + chunk] = torch.nn.functional.cross_entropy(
                logits, t, ignore_index=IGNORE_INDEX, reduction="none").double()
    return losses.view(len(batch), -1).sum(-1).tolist()


def score_texts(model, tokenizer, texts: list[str], max_length: int | None = None, max_tokens: int | None = None, *,
                max_batch_tokens: int) -> dict:
    """NLL, tokens, bytes, bits per byte and perplexity of a list of documents."""
    from cpt.measure.batching import length_batches, pad_token_id

    max_length = max_length or int(model.config.max_position_embeddings)
    docs, nbytes, used = tokenize_documents(tokenizer, texts, max_tokens)
    start = start_token(tokenizer)
    wins = [w for d in docs for w in windows(d, start, max_length)]
    ntok = sum(len(w) - 1 for w in wins)
    nll = 0.0
    pad = pad_token_id(tokenizer)
    for idx in length_batches([len(w) for w in wins], max_batch_tokens, 64):
        nll += sum(window_nll(model, [wins[i] for i in idx], pad))
    return summarize(nll, ntok, nbytes) | {"documents": used}


def summarize(nll: float, tokens: int, nbytes: int) -> dict:
    return {
        "nll_nats": nll,
        "tokens": tokens,
        "bytes": nbytes,
        "bits_per_byte": nll / LN2 / nbytes if nbytes else float("nan"),
        "perplexity": math.exp(nll / tokens) if tokens else float("nan"),
        "bytes_per_token": nbytes / tokens if tokens else float("nan"),
    }


def heldout_bpb(model, tokenizer, heldout_dir: str | os.PathLike, languages: Mapping[str, str] | None = None, *,
                max_bytes_per_language: int | None, max_length: int | None = None, max_batch_tokens: int,
                progress: bool = True) -> dict:
    """bpb per category and per language of results/<exp>/corpus/heldout/<category>.jsonl (the settings are
    config evaluate.bpb's: max_bytes_per_language None = everything, max_length None = the model's).

    The scored text is chosen by bytes, never by tokens (`select_spans`): the per-language byte budget is shared
    equally among its categories, so every model sees the same spans. `languages` maps category -> "zh"/"en"
    (the corpus config); categories missing from it are detected from their text (and reported as such)."""
    from tqdm import tqdm

    t0 = time.time()
    root = Path(heldout_dir)
    files = category_files(root)
    if not files:
        raise EvalError(f"{root}: no <category>.jsonl held-out files")
    languages = dict(languages or {})
    by_lang: dict[str, list[tuple[str, list[str]]]] = defaultdict(list)
    lang_source = {}
    for cat, f in files.items():
        texts = list(read_texts(f))
        if cat in languages:
            lang, lang_source[cat] = languages[cat], "config"
        else:
            lang, lang_source[cat] = detect_language(texts), "detected"
        if lang not in ("zh", "en"):
            raise EvalError(f"category {cat!r}: language {lang!r} is not 'zh' or 'en'")
        by_lang[lang].append((cat, texts))
    result: dict = {"categories": {}, "languages": {}, "max_bytes_per_language": max_bytes_per_language,
                    "selection": "whole documents in file order up to the byte budget, the last one cut at a "
                                 "character boundary; the same bytes for every tokenizer"}
    bar = tqdm(total=sum(len(v) for v in by_lang.values()), desc="bits per byte", disable=not progress, leave=False)
    for lang, cats in sorted(by_lang.items()):
        budget = None if max_bytes_per_language is None else max(1, max_bytes_per_language // len(cats))
        tot = [0.0, 0, 0]
        digests = []
        for cat, texts in cats:
            spans = select_spans(texts, budget)
            r = score_texts(model, tokenizer, spans, max_length, max_batch_tokens=max_batch_tokens)
            r.update({"language": lang, "language_source": lang_source[cat], "documents_available": len(texts),
                      "documents_cut": int(bool(spans) and spans[-1] != texts[len(spans) - 1]),
                      "text_sha256": spans_digest(spans)})
            result["categories"][cat] = r
            digests.append(r["text_sha256"])
            tot[0] += r["nll_nats"]
            tot[1] += r["tokens"]
            tot[2] += r["bytes"]
            bar.update(1)
        result["languages"][lang] = summarize(*tot) | {
            "categories": [c for c, _ in cats],
            "text_sha256": hashlib.sha256("".join(digests).encode()).hexdigest()}
    bar.close()
    result["seconds"] = round(time.time() - t0, 3)
    return result
