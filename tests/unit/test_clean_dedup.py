"""Exact and near-duplicate detection (cpt.clean.dedup) on crafted zh/en documents."""

from __future__ import annotations

import numpy as np
import pytest

from cpt.clean.dedup import Deduplicator, exact_key, shingles, signatures
from cpt.core.schema import default

# the Deduplicator's settings as the workflow gives them (clean.dedup with the schema's defaults)
DEDUP = {k: v for k, v in default("clean.dedup").items() if k != "ngram"}

ZH = ("中国政府顺利恢复对香港行使主权，并按照“一国两制”、“港人治港”、高度自治的方针保持香港的繁荣稳定。中国共产党"
      "成功地召开了第十五次全国代表大会，高举邓小平理论伟大旗帜，总结百年历史，展望新的世纪，制定了中国跨世纪发展的"
      "行动纲领。")
ZH_EDIT = ZH.replace("顺利", "成功").replace("百年", "千年")  # two small edits
ZH_OTHER = ("在这一年中，中国的改革开放和现代化建设继续向前迈进。国民经济保持了“高增长、低通胀”的良好发展态势。农业生产"
            "再次获得好的收成，企业改革继续深化，人民生活进一步改善。对外经济技术合作与交流不断扩大。")
EN = ("It was a bright cold day in April, and the clocks were striking thirteen. Winston Smith, his chin nuzzled into "
      "his breast in an effort to escape the vile wind, slipped quickly through the glass doors of Victory Mansions, "
      "though not quickly enough to prevent a swirl of gritty dust from entering along with him.")
EN_EDIT = EN.replace("bright cold", "bright, cold").replace("vile wind", "vile winds")


def sig(text, lang, seed=1):
    return signatures([shingles(text, lang, 5 if lang == "zh" else 3)], 128, seed)[0]


def test_exact_key_ignores_case_and_whitespace_only():
    assert exact_key("Hello  World\n") == exact_key("hello world")
    assert exact_key(ZH) == exact_key(ZH.replace("，", "， "))
    assert exact_key(ZH) != exact_key(ZH_EDIT)


def test_shingles_characters_for_chinese_words_for_english():
    assert shingles("ab cde", "zh", 3) == sorted(g.encode() for g in {"abc", "bcd", "cde"})
    assert shingles("The cat, the CAT sat", "en", 2) == sorted(g.encode() for g in {"the cat", "cat the", "cat sat"})
    assert shingles("短", "zh", 5) == ["短".encode()]  # shorter than n: the whole text
    assert shingles("", "en", 3) == []


def test_signatures_are_deterministic_and_seeded():
    a = signatures([shingles(ZH, "zh", 5), shingles(EN, "en", 3)], 64, seed=7)
    b = signatures([shingles(ZH, "zh", 5), shingles(EN, "en", 3)], 64, seed=7)
    c = signatures([shingles(ZH, "zh", 5), shingles(EN, "en", 3)], 64, seed=8)
    assert a.dtype == np.uint32 and a.shape == (2, 64)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_minhash_estimates_jaccard():
    s1, s2 = set(shingles(ZH, "zh", 5)), set(shingles(ZH_EDIT, "zh", 5))
    true = len(s1 & s2) / len(s1 | s2)
    est = float(np.mean(sig(ZH, "zh") == sig(ZH_EDIT, "zh")))
    assert abs(est - true) < 0.15
    assert float(np.mean(sig(ZH, "zh") == sig(ZH_OTHER, "zh"))) < 0.1


def run(docs, **kw):
    d = Deduplicator(**{**DEDUP, "seed": 1, **kw})
    out = []
    for i, (cat, text, lang) in enumerate(docs):
        out.append(d.add(i, cat, i + 1, exact_key(text), sig(text, lang))[0])
    return out, d


def test_exact_and_near_duplicates_zh_en():
    docs = [("news", ZH, "zh"), ("news", ZH_OTHER, "zh"), ("news", ZH + " ", "zh"), ("news", ZH_EDIT, "zh"),
            ("books", EN, "en"), ("books", EN_EDIT, "en"), ("books", EN.upper(), "en")]
    reasons, d = run(docs)
    assert reasons == [None, None, "exact_duplicate", "near_duplicate", None, "near_duplicate", "exact_duplicate"]
    s = d.summary()
    assert s["clusters"] == 2 and s["exact_duplicates"] == 2 and s["near_duplicates"] == 2
    assert sorted((c["representative"]["category"], c["representative"]["line"], c["size"]) for c in s["largest"]) \
        == [("books", 5, 3), ("news", 1, 3)]


def test_scope_global_vs_category():
    docs = [("a", ZH, "zh"), ("b", ZH_EDIT, "zh"), ("b", ZH, "zh")]
    assert run(docs)[0] == [None, "near_duplicate", "exact_duplicate"]
    assert run(docs)[1].summary()["cross_category_duplicates"] == 2
    assert run(docs, scope="category")[0] == [None, None, "near_duplicate"]


def test_threshold_and_switches():
    docs = [("a", ZH, "zh"), ("a", ZH_EDIT, "zh")]
    assert run(docs, threshold=0.95)[0] == [None, None]
    assert run(docs, near=False)[0] == [None, None]
    assert run([("a", ZH, "zh"), ("a", ZH, "zh")], exact=False)[0] == [None, "near_duplicate"]


def test_bad_scope():
    with pytest.raises(ValueError):
        Deduplicator(**{**DEDUP, "seed": 1, "scope": "shard"})
