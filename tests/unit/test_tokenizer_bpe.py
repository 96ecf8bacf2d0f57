"""Byte-level BPE family: extension with merges (exact size, every new piece reachable, English ids unchanged),
the saved directory under transformers' AutoTokenizer, and the candidates machinery through the protocol.

The base is a real byte-level BPE trained here with the `tokenizers` trainer on English (Botchan) plus a little
Chinese (People's Daily), so, like SmolLM2, some Chinese characters are tokens and most are byte sequences.
"""

from __future__ import annotations

import pytest
from tokenizer_fixtures import botchan, bpe_base_dir, peoples_daily, split, zh_text_files

from cpt.core.errors import ConfigError, TokenizerError
from cpt.tokenizer.bpe import WITNESS, ByteLevelBPETokenizer, bpe_segment, to_byte_level
from cpt.tokenizer.candidates import read_pieces_jsonl
from cpt.tokenizer.extended import build_extended_tokenizer
from cpt.tokenizer.family import family_of
from cpt.tokenizer.pieces import select_pieces
from cpt.tokenizer.registry import open_tokenizer


@pytest.fixture(scope="module")
def base():
    return open_tokenizer(bpe_base_dir())


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    """The tokenizer stage's own entry points on the BPE base: candidates (trained on the zh train split) ->
    pieces.jsonl -> extended directory, exactly base + 400 ids."""
    out = tmp_path_factory.mktemp("bpe-stage")
    train, held, en = zh_text_files()
    target = len(open_tokenizer(bpe_base_dir())) + 400
    section = {"vocab_size": target, "candidates": {"sources": [{"kind": "train_bpe", "vocab_size": 6000}]},
               "expansion": {"max_intermediate_pieces": 4, "english_lines": 3000}}
    select_pieces(section, bpe_base_dir(), out, [train], seed=1234)
    report = build_extended_tokenizer(section, bpe_base_dir(), out / "pieces.jsonl", out / "extended",
                                      out / "candidates.jsonl", english_files=[en], zh_files=[held])
    return out, report, target


def test_base_is_bpe_family(base):
    assert family_of(bpe_base_dir()) == "bpe" and isinstance(base, ByteLevelBPETokenizer)
    assert (base.bos_id, base.eos_id, base.unk_id) == (1, 2, 0) and base.pad_id is None
    texts = base.piece_texts()
    assert texts[:3] == [None, None, None]
    assert texts[base.pieces().index("Ġthe")] == " the"


def test_python_bpe_equals_the_library(base):
    """The simulator extend() plans with is the library's merge rule (on real zh pre-tokens and English words)."""
    ranks = {pair: r for r, pair in enumerate(base.merges())}
    vocab = {p: i for i, p in enumerate(base.pieces())}
    words = [w for line in peoples_daily()[::40][:60] for w in line.split("，")] + list(botchan()[5].split())
    checked = 0
    for w in words:
        pre = base.tokenizer.pre_tokenizer.pre_tokenize_str(w)
        if len(pre) == 1:
            want = base.tokenizer.encode(w, add_special_tokens=False).ids
            assert [vocab[s] for s in bpe_segment(pre[0][0], ranks)] == want, w
            checked += 1
    assert checked > 50


def test_exact_size_and_every_piece_reachable(stage):
    out, report, target = stage
    ext = open_tokenizer(out / "extended")
    base = open_tokenizer(bpe_base_dir())
    start = len(base)
    assert len(ext) == target == report["vocab_size"] and report["added"] == 400
    # new pieces are vocabulary entries with merges, not added tokens
    assert ext.data["added_tokens"] == base.data["added_tokens"]
    assert len(ext.merges()) == len(base.merges()) + report["new_merges"]
    produced = {a + b for a, b in ext.merges()[len(base.merges()):]}
    assert set(ext.pieces()[start:]) <= produced
    # every new id with a text comes out of the library for that text in context
    texts = ext.piece_texts()
    partial = [i for i in range(start, target) if texts[i] is None]
    assert sorted(ext.unreachable(start)) == partial and len(partial) == report["partial_intermediates"]
    for i in range(start, target):
        if texts[i] is not None:
            assert i in ext.encode([WITNESS + texts[i] + WITNESS])[0], texts[i]
    # the selected pieces themselves are in the vocabulary (those not skipped)
    added = set(texts[start:])
    pieces = read_pieces_jsonl(out / "pieces.jsonl")
    assert sum(p in added for p in pieces) >= 0.5 * len(pieces)


def test_english_ids_unchanged_and_chinese_shorter(stage):
    out, report, _ = stage
    ext, base = open_tokenizer(out / "extended"), open_tokenizer(bpe_base_dir())
    english = list(botchan())
    assert ext.encode(english) == base.encode(english)
    assert report["english"]["identical"] and report["english"]["lines"] > 400
    _, held = split(peoples_daily())
    zh = list(held[:200])
    n_base = sum(map(len, base.encode(zh)))
    enc = ext.encode(zh)
    assert sum(map(len, enc)) < 0.95 * n_base
    used = {i for ids in enc for i in ids if i >= len(base)}
    assert len(used) > 150          # the new pieces come out inside running text, not only on their own


def test_saved_directory_loads_with_autotokenizer_and_agrees(stage):
    from transformers import AutoTokenizer

    out, report, _ = stage
    assert report["agreement"]["mismatches"] == {"fast": 0}
    hf = AutoTokenizer.from_pretrained(str(out / "extended"))
    ext = open_tokenizer(out / "extended")
    _, held = split(peoples_daily())
    texts = list(held[200:300]) + list(botchan()[:50]) + ["混合 mixed 文本 text，含有 English 和中文。"]
    assert [hf.encode(t, add_special_tokens=False) for t in texts] == ext.encode(texts)
    assert len(hf) == len(ext) and hf.eos_token == "<|im_end|>"
    assert hf.decode(ext.encode(texts[:1])[0]) == texts[0]
    # a causal LM's inputs only: generate() refuses token_type_ids
    assert set(hf("中文 text")) == {"input_ids", "attention_mask"}


def test_exact_size_with_intermediates_and_unsplittable_pieces(base):
    start = len(base)
    words = ["乒乓球", "〇一", "蝴蝶", "骆驼"]
    reserve = ["琵琶", "葡萄", "鳄鱼", "蜻蜓", "蚂蚁", "螃蟹", "蝙蝠", "鹦鹉", "孔雀", "麒麟", "猫", "狗"]
    ext, report = base.extend(words, reserve=reserve, vocab_size=start + 9)
    assert len(ext) == start + 9 and report["added"] == 9
    assert report["skipped_split_by_pre_tokenizer"] == 1            # 〇 is a number to the GPT-2 regex
    assert report["by_origin"]["intermediate"] > 0                  # characters the base only has as bytes
    texts = ext.piece_texts()
    added = [p for p in words + reserve if p in texts[start:]]
    assert "乒乓球" in added and len(added) >= 2
    for p in added:
        assert texts.index(p) in ext.encode([WITNESS + p + WITNESS])[0]
    assert ext.encode(list(botchan()[:100])) == base.encode(list(botchan()[:100]))


def test_errors(base):
    with pytest.raises(ConfigError, match="smaller than the base"):
        base.extend(["中国"], vocab_size=10)
    with pytest.raises(TokenizerError, match="needs 1000 new ids"):
        base.extend(["中国", "人民"], vocab_size=len(base) + 1000)
    with pytest.raises(ConfigError, match="unreachable"):
        base.extend(["中国"], unreachable="nope")


def test_drop_policy_adds_only_pieces_without_intermediates(base):
    ext, report = base.extend(["中国人民共和国", "中国"], unreachable="drop")
    new = ext.pieces()[len(base):]
    assert report["by_origin"].get("intermediate", 0) == 0 and report["dropped_too_many_intermediates"] >= 1
    assert to_byte_level("中国人民共和国") not in new



def test_extended_keeps_the_base_chat_template(stage, tmp_path):
    """A base tokenizer's chat template (e.g. SmolLM2-Instruct's, from its GGUF) is written into the extended one,
    and from there travels to model/init and every final/."""
    import json
    import shutil

    from cpt.tokenizer.family import chat_template_of

    out, _, target = stage
    base = tmp_path / "base"
    shutil.copytree(bpe_base_dir(), base)
    cfg = json.loads((base / "tokenizer_config.json").read_text(encoding="utf-8"))
    cfg["chat_template"] = "{% for m in messages %}<|im_start|>{{ m['content'] }}<|im_end|>{% endfor %}"
    (base / "tokenizer_config.json").write_text(json.dumps(cfg), encoding="utf-8")
    _, held, en = zh_text_files()
    build_extended_tokenizer({"vocab_size": target, "expansion": {"english_lines": 50, "agreement_lines": 20}}, base,
                             out / "pieces.jsonl", tmp_path / "extended", english_files=[en], zh_files=[held])
    assert chat_template_of(tmp_path / "extended") == cfg["chat_template"]
    assert chat_template_of(out / "extended") is None  # the fixture's base has none: none invented
