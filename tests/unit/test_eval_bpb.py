"""Bits-per-byte arithmetic against an independent full-logits computation."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "eval"
sys.path.insert(0, str(FIX))

import tiny_models  # noqa: E402

from cpt.core.schema import default  # noqa: E402
from cpt.measure import bpb  # noqa: E402

BATCH = default("evaluate.bpb.max_batch_tokens")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tok, model, _ = tiny_models.tiny_tokenizer_and_model(tmp_path_factory.mktemp("tiny"), seed=5,
                                                         max_position_embeddings=16)
    return tok, model


def _reference_nll(model, tok, text, max_length):
    """Plain computation: full logits of the whole model, log_softmax, gather — per window, in a loop."""
    seq = [tok.bos_token_id] + tok(text, add_special_tokens=False)["input_ids"]
    total, n, start = 0.0, 0, 0
    while start < len(seq) - 1:
        w = seq[start:start + max_length]
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([w])).logits[0].double(), -1)
        for j in range(1, len(w)):
            total -= logp[j - 1, w[j]].item()
            n += 1
        start += max_length - 1
    return total, n


def test_windows_score_every_token_once():
    ids = list(range(10, 30))
    ws = bpb.windows(ids, 1, 8)
    assert all(len(w) <= 8 for w in ws)
    targets = [t for w in ws for t in w[1:]]
    assert targets == ids
    assert bpb.windows([], 1, 8) == []


def test_bpb_matches_reference(tiny):
    tok, model = tiny
    texts = ["人民日报一九九八年一月，新年贺词。改革开放，经济发展。",  # longer than max_length 16: several windows
             "In the beginning God created the heaven and the earth.", "ok"]
    res = bpb.score_texts(model, tok, texts, max_length=16, max_batch_tokens=40)
    ref_nll, ref_n = 0.0, 0
    for t in texts:
        a, b = _reference_nll(model, tok, t, 16)
        ref_nll += a
        ref_n += b
    nbytes = sum(len(t.encode("utf-8")) for t in texts)
    assert res["tokens"] == ref_n
    assert res["bytes"] == nbytes
    assert res["nll_nats"] == pytest.approx(ref_nll, rel=1e-4)
    assert res["bits_per_byte"] == pytest.approx(ref_nll / math.log(2) / nbytes, rel=1e-4)
    assert res["perplexity"] == pytest.approx(math.exp(ref_nll / ref_n), rel=1e-4)


def test_token_cap_counts_bytes_of_scored_prefix(tiny):
    tok, model = tiny
    text = "In the beginning God created the heaven and the earth."
    ids = tok(text, add_special_tokens=False)["input_ids"]
    docs, nbytes, used = bpb.tokenize_documents(tok, [text, "more text"], max_tokens=5)
    assert docs == [ids[:5]] and used == 1
    covered = tok.decode(ids[:5]).strip()
    assert nbytes == len(covered.encode("utf-8"))
    assert text.startswith(covered)


def test_heldout_per_language(tiny, tmp_path):
    tok, model = tiny
    res = bpb.heldout_bpb(model, tok, FIX / "heldout", languages={"news": "zh"}, max_bytes_per_language=None,
                          max_length=16, max_batch_tokens=BATCH, progress=False)
    assert res["categories"]["news"]["language_source"] == "config"
    assert res["categories"]["bible"]["language"] == "en"
    assert res["categories"]["bible"]["language_source"] == "detected"
    zh = res["languages"]["zh"]
    news = res["categories"]["news"]
    assert zh["bits_per_byte"] == pytest.approx(news["nll_nats"] / math.log(2) / news["bytes"])
    assert news["bytes"] == sum(len(t.encode()) for t in bpb.read_texts(FIX / "heldout" / "news.jsonl"))
    capped = bpb.heldout_bpb(model, tok, FIX / "heldout", max_bytes_per_language=40, max_length=16,
                             max_batch_tokens=BATCH, progress=False)
    assert capped["languages"]["en"]["bytes"] == 40 and capped["categories"]["bible"]["documents_cut"] == 1


def test_spans_are_chosen_on_bytes_at_character_boundaries():
    texts = ["ab", "中文字", "xyz"]
    assert bpb.select_spans(texts, None) == texts
    assert bpb.select_spans(texts, 2) == ["ab"]
    assert bpb.select_spans(texts, 6) == ["ab", "中"]  # 4 bytes left: one 3-byte character, never half of one
    assert bpb.select_spans(texts, 3) == ["ab"]  # 1 byte left: not even one character
    assert bpb.select_spans(texts, 11) == ["ab", "中文字"]
    assert bpb.spans_digest(["ab", "c"]) != bpb.spans_digest(["a", "bc"])


def test_two_tokenizers_score_the_same_bytes(tiny, tmp_path):
    """A fine tokenizer (many tokens per text) and a coarse one score bits per byte over identical spans: same
    bytes and digest per category and language, different token counts, each figure its own model's."""
    coarse_tok, coarse_model = tiny
    fine_tok, fine_model, _ = tiny_models.tiny_tokenizer_and_model(tmp_path, seed=6, max_position_embeddings=16,
                                                                    vocab_size=390)
    heldout = tmp_path / "heldout"
    heldout.mkdir()
    long_zh = "人民日报一九九八年一月，新年贺词。改革开放，经济发展，社会进步。" * 3
    (heldout / "news.jsonl").write_text("".join(
        f'{{"source": "", "target": "{t}"}}\n' for t in (long_zh, "人民生活水平不断提高。")), encoding="utf-8")
    (heldout / "bible.jsonl").write_text(
        '{"source": "", "target": "In the beginning God created the heaven and the earth."}\n', encoding="utf-8")
    runs = [bpb.heldout_bpb(model, tok, heldout, {"news": "zh", "bible": "en"}, max_bytes_per_language=100,
                            max_length=16, max_batch_tokens=BATCH, progress=False)
            for tok, model in ((coarse_tok, coarse_model), (fine_tok, fine_model))]
    for lang in ("zh", "en"):
        a, b = (r["languages"][lang] for r in runs)
        assert a["bytes"] == b["bytes"] > 0 and a["text_sha256"] == b["text_sha256"]
    assert runs[0]["languages"]["zh"]["bytes"] == 99  # 33 characters of 3 bytes: the 100-byte budget, cut inside
    assert runs[0]["languages"]["en"]["bytes"] == len("In the beginning God created the heaven and the earth.")
    ca, fa = (r["categories"]["news"] for r in runs)
    assert fa["tokens"] > ca["tokens"]  # different granularity, same text
    assert ca["bits_per_byte"] != fa["bits_per_byte"]


def test_detect_language():
    assert bpb.detect_language(["人民日报一九九八年一月"]) == "zh"
    assert bpb.detect_language(["In the beginning"]) == "en"


def test_read_texts_names_bad_lines(tmp_path):
    from cpt.core.errors import RecordError

    p = tmp_path / "h.jsonl"
    p.write_text('{"source": "a", "target": "b"}\n\n{"source": "c"}\n', encoding="utf-8")
    with pytest.raises(RecordError, match=r"h\.jsonl:3: record has no 'target'") as e:
        list(bpb.read_texts(p))
    assert e.value.reason == "missing_target"
    p.write_text('{"source": "a", "target": "b"}\nnot json\n', encoding="utf-8")
    with pytest.raises(RecordError, match=r"h\.jsonl:2: invalid_json") as e:
        list(bpb.read_texts(p))
    assert e.value.reason == "invalid_json"
