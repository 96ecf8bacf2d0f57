"""Each filter of cpt.clean.filters on crafted zh/en documents, with the default thresholds."""

from __future__ import annotations

import pytest

from cpt.clean.filters import FILTER_ORDER, TextStats, first_failure
from cpt.clean.quality import score
from cpt.core.schema import default

ZH_NEWS = ("１９９７年，是中国发展历史上非常重要的很不平凡的一年。中国人民决心继承邓小平同志的遗志，继续把建设有中国特色"
           "社会主义事业推向前进。中国政府顺利恢复对香港行使主权，并按照“一国两制”、“港人治港”、高度自治的方针保持香港"
           "的繁荣稳定。").replace("１９９７", "1997")
EN_TEXT = ("It was a bright cold day in April, and the clocks were striking thirteen. The hallway smelt of boiled "
           "cabbage and old rag mats. At one end of it a coloured poster, too large for indoor display, had been "
           "tacked to the wall.")


def fails(text, lang, **override):
    params = {**default(f"clean.filters.{lang}"), **override}
    return first_failure(TextStats(text, lang), params)


def test_clean_real_text_passes_both_languages():
    assert fails(ZH_NEWS, "zh") is None
    assert fails(EN_TEXT, "en") is None


def test_short_chinese_idiom_and_classical_poem_pass():
    assert fails("阿鼻地狱", "zh") is None
    assert fails("床前明月光，疑是地上霜。\n举头望明月，低头思故乡。", "zh") is None
    assert fails("牀前明月光，疑是地上霜。\n舉頭望明月，低頭思故鄉。", "zh") is None  # even unconverted


def test_length_counts_characters_not_words():
    assert fails("的", "zh") == "too_short"
    assert fails("好的", "zh") is None
    assert fails("ok ok", "en") == "too_short"
    assert fails(ZH_NEWS, "zh", max_chars=50) == "too_long"
    assert fails(ZH_NEWS, "zh", min_chars=None, max_chars=None) is None


def test_mojibake_detected_when_not_repairable():
    lossy = ZH_NEWS.encode("utf-8").decode("gbk", errors="replace")
    assert fails(lossy, "zh") == "mojibake"
    assert fails("The cafÃ© was closed and the waiter said: â€œno serviceâ€\x9d today, sorry.", "en") == "mojibake"


def test_script_share_digits_symbols():
    assert fails(EN_TEXT, "zh") == "low_script_ratio"
    assert fails(ZH_NEWS, "en") == "low_script_ratio"
    assert fails("截至2024年12月31日，共计12345678人次", "zh") == "too_many_digits"
    assert fails("这家店的价格★★★★★，服务♥♥♥，环境◆◆◆◆好", "zh") == "too_many_symbols"
    assert fails("二○○○年长城将竖立倒计时钟", "zh") is None  # the circle is a Chinese zero, not a symbol


def test_repeated_lines():
    spam = "\n".join(["欢迎光临本店，全场商品八折优惠。"] * 6 + ["今天天气很好。"])
    assert fails(spam, "zh") == "repeated_lines"
    en_spam = "\n".join(["Buy cheap watches online today at our store."] * 5 + [EN_TEXT])
    assert fails(en_spam, "en") == "repeated_lines"
    # speaker names in a play repeat, but are short lines: not counted
    speech = ["Who's there?", "Nay, answer me: stand, and unfold yourself.", "Long live the king!",
              "You come most carefully upon your hour.", "'Tis now struck twelve; get thee to bed, Francisco.",
              "For this relief much thanks: 'tis bitter cold, and I am sick at heart."]
    play = "\n".join(f"**{'BERNARDO' if i % 2 else 'FRANCISCO'}**\n{line}" for i, line in enumerate(speech))
    assert fails(play, "en", lang_min_prob=None) is None


def test_repeated_ngrams_character_ngrams_for_chinese_word_ngrams_for_english():
    zh_spam = "好好学习天天向上" * 30
    assert fails(zh_spam, "zh") == "repeated_ngrams"
    en_spam = "the best deal the best deal the best deal " * 20
    assert fails(en_spam, "en") == "repeated_ngrams"
    s = TextStats("abcab", "zh")
    assert s.top_ngram_share(2) == pytest.approx(4 / 5)  # "ab" twice covers 4 of 5 characters
    assert s.dup_ngram_share(2) == pytest.approx(4 / 5)
    w = TextStats("red fish blue fish red fish", "en")
    assert w.top_ngram_share(2) == pytest.approx(14 / 22)  # "red fish" x2: 7 letters each of 22
    assert w.dup_ngram_share(2) == pytest.approx(14 / 22)


def test_boilerplate_markers():
    page = "本站所有文章版权所有，未经授权禁止转载。\n扫描二维码关注我们\n" + ZH_NEWS
    assert fails(page, "zh") == "boilerplate"
    assert fails("All rights reserved. Privacy policy. Terms of use.\n" + EN_TEXT, "en") == "boilerplate"
    assert fails(ZH_NEWS + "\n" + ZH_NEWS[::-1], "zh") is None


def test_language_identification():
    ja = "今日は天気がとても良いので、私たちは公園へ散歩に行きました。桜の花がきれいに咲いていました。"
    assert fails(ja, "zh") == "wrong_language"
    fr = ("Il était une fois une petite fille qui vivait dans un village près de la forêt. Chaque fois qu'elle "
          "sortait, elle portait un chaperon rouge.")
    assert fails(fr, "en") == "wrong_language"
    assert fails(fr, "en", lang_min_prob=None) is None


def test_first_failing_filter_wins_in_documented_order():
    assert FILTER_ORDER.index("script") < FILTER_ORDER.index("language")
    # English text in a Chinese category fails the script share first, never wrong_language
    assert fails(EN_TEXT, "zh") == "low_script_ratio"
    assert fails("的", "zh", min_script_ratio=0.99) == "too_short"


def test_quality_score_orders_clean_above_junk():
    q = default("clean.quality.zh")
    good = score(TextStats(ZH_NEWS, "zh"), q)
    junk = score(TextStats("好好好好好好好好好好好好好好好好 123 ★★★ ###", "zh"), q)
    assert 0.0 <= junk < good - 0.2 and good <= 1.0
    assert good >= q["min_score"]


def test_quality_hook_is_called(monkeypatch):
    import sys
    import types

    mod = types.ModuleType("cpt_test_hook")
    mod.calls = []
    mod.ppl = lambda text, language: mod.calls.append(language) or 0.0
    monkeypatch.setitem(sys.modules, "cpt_test_hook", mod)
    q = {**default("clean.quality.zh"), "hook": "cpt_test_hook:ppl", "hook_weight": 7.0}
    plain = score(TextStats(ZH_NEWS, "zh"), default("clean.quality.zh"))
    hooked = score(TextStats(ZH_NEWS, "zh"), q)
    assert mod.calls == ["zh"] and hooked < plain
