"""Step 1.6: expansion, exact reachability (repair / drop / replace), exact size, English unchanged, HF dirs."""

from __future__ import annotations

import json

import pytest
from tokenizer_fixtures import base_tokenizer_dir, botchan, zh_text_files

from cpt.core.errors import TokenizerError
from cpt.core.schema import default
from cpt.tokenizer import spm
from cpt.tokenizer import spm_extend as expand
from cpt.tokenizer.extended import build_extended_tokenizer
from cpt.tokenizer.pieces import select_pieces
from cpt.tokenizer.spm_extend import (
    append_pieces,
    english_check,
    find_unreachable,
    new_piece_scores,
    piece_text,
    repair_chain,
    witness_char,
)

SPM_OPTIONS = ("score", "unreachable", "max_repair_pieces", "max_rounds")


def extend(base, pieces, reserve=(), vocab_size=None, **options):
    """expand.extend with the schema's tokenizer.expansion defaults for the options not given."""
    given = {k: default(f"tokenizer.expansion.{k}") for k in SPM_OPTIONS}
    return expand.extend(base, pieces, reserve, vocab_size, **{**given, **options})


@pytest.fixture(scope="module")
def base():
    return spm.load_proto(base_tokenizer_dir() / "tokenizer.model")


def _reached_in_context(proto, piece):
    """Independent restatement of the definition: some text (here W + text + W) encodes to a sequence with it."""
    sp = spm.processor(proto)
    w = witness_char(p.piece for p in proto.pieces)
    return sp.piece_to_id(piece) in sp.encode(w + piece_text(piece) + w, out_type=int)


def test_scores_ranked_above_base_and_distinct(base):
    s = new_piece_scores(base, 5, "ranked")
    top = max(p.score for p in base.pieces if p.type == spm.NORMAL)
    assert s == sorted(s, reverse=True) and len(set(s)) == 5 and min(s) > top
    assert new_piece_scores(base, 3, "zero") == [0.0, 0.0, 0.0]
    proto = append_pieces(base, ["中国", "人民"])
    assert len(proto.pieces) == 32002 and proto.pieces[32000].piece == "中国"
    assert proto.pieces[32000].type == spm.NORMAL
    assert [(p.piece, p.score) for p in proto.pieces[:32000]] == [(p.piece, p.score) for p in base.pieces]


def test_unreachable_piece_is_found_and_repaired(base):
    # "上下左右": no two-character piece inside it exists, so its characters dead-end at [上, 下, 左, 右]
    proto = append_pieces(base, ["中国", "上下左右"])
    assert find_unreachable(proto, 32000) == [32001]
    assert not _reached_in_context(proto, "上下左右") and _reached_in_context(proto, "中国")
    assert repair_chain("上下左右", spm.merge_scores(proto)) == ["上下", "上下左"]
    ext, report = extend(base, ["中国", "上下左右"], vocab_size=32004, max_repair_pieces=2)
    pieces = [p.piece for p in ext.pieces[32000:]]
    assert pieces == ["中国", "上下", "上下左", "上下左右"]
    assert report["repaired"] == 1 and report["repair_pieces"] == 2 and report["dropped"] == 0
    assert report["reachable"] == report["added"] == 4 and find_unreachable(ext, 32000) == []
    assert all(_reached_in_context(ext, p) for p in pieces)


def test_unreachable_piece_is_dropped_and_replaced_keeping_size(base):
    for kwargs in ({"unreachable": "drop"}, {"max_repair_pieces": 1}):
        ext, report = extend(base, ["中国", "上下左右", "人民"], reserve=["经济", "发展"], vocab_size=32003, **kwargs)
        # 经济 would need its character 济 too: no room, so it gives way to 发展
        assert [p.piece for p in ext.pieces[32000:]] == ["中国", "人民", "发展"]
        assert report["dropped"] == 1 and report["by_origin"] == {"list": 2, "reserve": 1}
        assert report["displaced"] == 1 and report["char_pieces"] == 0
        assert report["examples"]["dropped"][0] == {"piece": "上下左右", "segments": ["上", "下", "左", "右"]}
    with pytest.raises(TokenizerError, match="not enough pieces"):
        extend(base, ["中国", "上下左右"], vocab_size=32002, unreachable="drop")


def test_merge_order_dead_end_needs_one_repair_piece(base):
    # with "下左" merged first the characters reach [上, 下左, 右]: neither 上下左 nor 下左右 exists
    proto = append_pieces(base, ["下左", "上下左右"])
    assert spm.bpe_segment("上下左右", spm.merge_scores(proto)) == ["上", "下左", "右"]
    assert find_unreachable(proto, 32000) == [32001]
    ext, report = extend(base, ["下左", "上下左右"], vocab_size=32003)
    assert [p.piece for p in ext.pieces[32000:]] == ["下左", "上下左", "上下左右"]
    assert find_unreachable(ext, 32000) == []


def test_characters_of_new_pieces_become_pieces(base):
    # 济 and 纪 are not LLaMA pieces: sentencepiece would still merge 世+纪 into 世纪, HF's fast BPE could not
    vocab = {p.piece for p in base.pieces}
    assert "济" not in vocab and "纪" not in vocab and "经" in vocab and "世" in vocab
    ext, report = extend(base, ["经济", "世纪"], vocab_size=32004)
    assert [p.piece for p in ext.pieces[32000:]] == ["济", "经济", "纪", "世纪"]
    assert report["char_pieces"] == 2 and report["displaced"] == 0
    vocab = {p.piece for p in ext.pieces}
    assert all(ch in vocab for p in ext.pieces[32000:] for ch in p.piece)
    with pytest.raises(TokenizerError, match="not enough pieces"):
        extend(base, ["经济", "世纪"], vocab_size=32005)
    ext, report = extend(base, ["经济", "世纪", "中国"], vocab_size=32004)  # 中国 makes room for the characters
    assert report["displaced"] == 1 and "中国" not in {p.piece for p in ext.pieces}


def test_english_check_raises_when_english_changes(base):
    lines = list(botchan())
    ext = append_pieces(base, ["中国", "人民"])
    assert english_check(spm.processor(base), spm.processor(ext), lines)["identical"]
    assert len(lines) > 4000
    bad = append_pieces(base, ["▁Botchan"])  # an English word piece changes English tokenization
    with pytest.raises(TokenizerError, match="changes English"):
        english_check(spm.processor(base), spm.processor(bad), lines)


def test_bpe_rule_matches_sentencepiece_on_extended_chinese(base):
    _, held, _ = zh_text_files()
    ext = append_pieces(base, ["中国", "人民", "中国人", "国人民", "共和国", "中华人民共和国", "中华", "人民共和国"])
    sp, scores = spm.processor(ext), spm.merge_scores(ext)
    checked = 0
    for line in held.read_text(encoding="utf-8").splitlines()[:200] + ["中华人民共和国中国人民"]:
        pieces = sp.encode(line, out_type=str)
        if any(p.startswith("<0x") for p in pieces):
            continue  # byte fallback: characters outside the vocabulary
        assert spm.bpe_segment(spm.normalize(line), scores) == pieces
        checked += 1
    assert checked >= 1


def test_full_small_expansion_pipeline(tmp_path):
    base_dir = base_tokenizer_dir()
    train, held, en = zh_text_files()
    section = {"vocab_size": 32000 + 400,
               "candidates": {"sources": [{"kind": "train", "vocab_size": 3000, "character_coverage": 0.98},
                                          {"kind": "jieba", "min_freq": 2000}]},
               "expansion": {"english_lines": 3000, "agreement_lines": 100}}
    select_pieces(section, base_dir, tmp_path, [train], seed=1)
    report = build_extended_tokenizer(section, base_dir, tmp_path / "pieces.jsonl", tmp_path / "extended",
                                      tmp_path / "candidates.jsonl", zh_files=[held])
    ext = spm.load_proto(tmp_path / "extended" / "tokenizer.model")
    assert len(ext.pieces) == 32400 == report["vocab_size"]
    assert report["reachable"] == report["added"] == 400
    assert find_unreachable(ext, 32000) == []
    assert report["english"]["identical"] and report["english"]["lines"] == 3000
    assert report["agreement"]["mismatches"] == {"slow": 0, "fast": 0}
    for name in ("tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                 "expansion.json", "provenance.json"):
        assert (tmp_path / "extended" / name).is_file(), name
    assert json.loads((tmp_path / "extended" / "expansion.json").read_text())["added"] == 400
    # deterministic: same inputs, same model bytes
    build_extended_tokenizer(section, base_dir, tmp_path / "pieces.jsonl", tmp_path / "again",
                             tmp_path / "candidates.jsonl", zh_files=[held])
    assert (tmp_path / "again" / "tokenizer.model").read_bytes() == (tmp_path / "extended" / "tokenizer.model").read_bytes()
