"""Step 1.5: candidate pieces: training, word lists, filter, rank, exact cap, the reference jsonl format."""

from __future__ import annotations

import json

import pytest
from tokenizer_fixtures import base_tokenizer_dir, zh_text_files

from cpt.core.errors import ConfigError, RecordError, TokenizerError
from cpt.tokenizer.candidates import (
    candidates_from_gguf,
    candidates_from_jieba,
    complete_source,
    read_pieces_jsonl,
    read_texts,
    train_candidate_model,
    trainer_sentences,
)
from cpt.tokenizer.pieces import CandidateFilter, SourceStats, filter_candidates, select_pieces, write_pieces_jsonl
from cpt.tokenizer.spm import load_proto


def _jsonl(path):
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def test_filter_rules():
    f = CandidateFilter.from_config(["中", "▁中国", "ab"], {"charset": "han"})
    assert f.check("中国") == ("中国", None)
    assert f.check("▁人民") == ("人民", None)  # prefix stripped
    assert f.check("中")[1] == "in_base"
    assert f.check("中a")[1] == "charset"
    assert f.check("，中")[1] == "charset"
    assert f.check("中 国")[1] == "whitespace_or_control"
    assert f.check("▁")[1] == "empty"
    assert CandidateFilter.from_config([], {"charset": "cjk"}).check("”，")[1] is None
    assert CandidateFilter.from_config([], {"charset": "any"}).check("<0x41>")[1] == "special_or_byte"
    assert CandidateFilter.from_config([], {"charset": "regex:[a-z]+"}).check("abc")[1] is None
    keep = CandidateFilter.from_config([], {"strip_prefix": False})
    assert keep.check("▁人民") == ("▁人民", None)
    with pytest.raises(ConfigError, match="charset"):
        CandidateFilter.from_config([], {"charset": "latin"})


def test_filter_counts_duplicates_and_reasons():
    from cpt.tokenizer.pieces import Candidate

    f = CandidateFilter.from_config(["中"], {"charset": "han", "max_piece_chars": 3})
    stats = SourceStats()
    got = [c.piece for c in filter_candidates(
        [Candidate(p, "t", 0) for p in ["中国", "▁中国", "中", "abc", "中华人民共和国", "人民"]], f, stats)]
    assert got == ["中国", "人民"]
    assert stats.read == 6 and stats.kept == 2
    assert dict(stats.rejected) == {"duplicate": 1, "in_base": 1, "charset": 1, "too_long": 1}


def test_jieba_ranked_by_frequency():
    data = "乙 5 n\n甲 9 n\n丙 5 v\n丁 1 n\n"
    assert [c.piece for c in candidates_from_jieba(data, "jieba", 0)] == ["甲", "乙", "丙", "丁"]
    assert [c.piece for c in candidates_from_jieba(data, "jieba", min_freq=5)] == ["甲", "乙", "丙"]
    with pytest.raises(TokenizerError, match="jieba:2"):
        list(candidates_from_jieba("a 1\nb x\n", "jieba", 0))


def test_trainer_sentences_cut_long_lines():
    long = "这是一个句子。" * 1000
    parts = list(trainer_sentences([long, "short\n\nline"], max_bytes=300))
    assert all(len(p.encode()) <= 300 for p in parts)
    assert "".join(parts[:-2]) == long and parts[-2:] == ["short", "line"]


def test_training_is_seeded_and_deterministic():
    train, _, _ = zh_text_files()
    texts = list(read_texts([train]))[:800]
    opts = {k: v for k, v in complete_source({"kind": "train"}).items() if k not in ("kind", "vocab_size")}
    opts["character_coverage"] = 0.98
    a = train_candidate_model(texts, vocab_size=2500, seed=3, **opts)
    b = train_candidate_model(texts, vocab_size=2500, seed=3, **opts)
    assert a == b
    proto = load_proto(a)
    assert proto.normalizer_spec.name == "identity" and proto.trainer_spec.byte_fallback
    assert len(proto.pieces) == 2500


def test_select_exact_size_from_trained_model(tmp_path):
    base = base_tokenizer_dir()
    train, _, _ = zh_text_files()
    section = {"vocab_size": 32000 + 300, "candidates": {"sources": [{"kind": "train", "vocab_size": 3000, "character_coverage": 0.98}]}}
    report = select_pieces(section, base, tmp_path, [train], seed=5)
    pieces = [r["piece"] for r in _jsonl(tmp_path / "pieces.jsonl")]
    assert len(pieces) == 300 == report["selected"]
    assert all(set(r) == {"piece"} for r in _jsonl(tmp_path / "pieces.jsonl"))  # the reference format
    base_vocab = {p.piece for p in load_proto(base / "tokenizer.model").pieces}
    assert len(set(pieces)) == 300 and not set(pieces) & base_vocab
    assert all(not p.startswith("▁") and all("\u4e00" <= ch <= "\u9fff" for ch in p) for p in pieces)
    cands = _jsonl(tmp_path / "candidates.jsonl")
    assert [c["piece"] for c in cands if c["selected"]] == pieces
    assert report["reserve"] == len(cands) - 300 > 0
    # ranked by the trained model's score (its merge order)
    model = load_proto(tmp_path / "candidates-train.model")
    assert [c["score"] for c in cands] == sorted((c["score"] for c in cands), reverse=True)
    assert model.trainer_spec.vocab_size == 3000
    assert (tmp_path / "pieces.provenance.json").is_file()
    # same config, same bytes
    select_pieces(section, base, tmp_path / "again", [train], seed=5)
    assert (tmp_path / "again" / "pieces.jsonl").read_bytes() == (tmp_path / "pieces.jsonl").read_bytes()


def test_select_too_few_candidates_is_an_error(tmp_path):
    train, _, _ = zh_text_files()
    # capacity 5,041 (5,300 - 259 special and byte pieces) suffices on paper; the filters leave fewer
    section = {"vocab_size": 32000 + 5000, "candidates": {"sources": [{"kind": "train", "vocab_size": 5300, "character_coverage": 0.98}]}}
    with pytest.raises(TokenizerError, match="only .* candidates survive"):
        select_pieces(section, base_tokenizer_dir(), tmp_path, [train], seed=1234)
    with pytest.raises(ConfigError, match="vocab_size"):
        select_pieces({"vocab_size": 100}, base_tokenizer_dir(), tmp_path, [train], seed=1234)


def test_select_from_word_lists_jieba_then_baichuan(tmp_path):
    section = {"vocab_size": 32000 + 400,
               "candidates": {"reserve": 0.5, "sources": [{"kind": "jieba", "min_freq": 30000}, {"kind": "gguf"}]}}
    report = select_pieces(section, base_tokenizer_dir(), tmp_path, seed=1234)
    pieces = read_pieces_jsonl(tmp_path / "pieces.jsonl")
    assert len(pieces) == 400
    assert report["sources"]["jieba"]["kept"] < 400  # jieba's high-frequency words ran out, Baichuan filled in
    assert set(report["selected_by_source"]) == {"jieba", "gguf"}
    assert report["sources"]["jieba"]["rejected"]["in_base"] > 0  # 了, 是, 在 ... are LLaMA pieces already


def test_baichuan_gguf_candidates():
    from cpt.core.sources import read_member

    cands = list(candidates_from_gguf(read_member("llama-cpp-python",
                                                  "vendor/llama.cpp/models/ggml-vocab-baichuan.gguf")))
    assert len(cands) > 60000
    han = [c for c in cands if all("\u4e00" <= ch <= "\u9fff" for ch in c.piece.lstrip("▁"))]
    assert len(han) > 20000
    assert [c.score for c in cands] == sorted((c.score for c in cands), reverse=True)


def test_user_pieces_file(tmp_path):
    write_pieces_jsonl(["中华", "人民", "中华", "qzxv", "中"], tmp_path / "mine.jsonl")
    assert read_pieces_jsonl(tmp_path / "mine.jsonl") == ["中华", "人民", "中华", "qzxv", "中"]
    report = select_pieces({"vocab_size": 32003, "pieces_file": str(tmp_path / "mine.jsonl")},
                           base_tokenizer_dir(), tmp_path / "out", seed=1234)
    assert read_pieces_jsonl(tmp_path / "out" / "pieces.jsonl") == ["中华", "人民", "qzxv"]
    assert report["sources"]["pieces_file"]["rejected"] == {"duplicate": 1, "in_base": 1}
    (tmp_path / "bad.jsonl").write_text('{"piece": "a"}\n{"text": "b"}\n', encoding="utf-8")
    with pytest.raises(RecordError, match="bad.jsonl:2"):
        read_pieces_jsonl(tmp_path / "bad.jsonl")


def test_jsonl_inputs_use_record_reasons(tmp_path):
    """pieces and corpus jsonl are read by cpt.artifacts.records: its reason names, file:line, blank lines passed over."""
    (tmp_path / "p.jsonl").write_text('{"piece": "中华"}\n\n{"piece": "人民"\n', encoding="utf-8")
    with pytest.raises(RecordError, match=r"p\.jsonl:3: invalid_json") as e:
        read_pieces_jsonl(tmp_path / "p.jsonl")
    assert e.value.reason == "invalid_json"
    (tmp_path / "c.jsonl").write_text('\n{"source": "a", "target": "b"}\n{"source": "c"}\n', encoding="utf-8")
    texts = read_texts([tmp_path / "c.jsonl"])
    assert next(texts) == "ab"
    with pytest.raises(RecordError, match=r"c\.jsonl:3") as e:
        next(texts)
    assert e.value.reason == "bad_record"


def test_capacity_is_checked_first_naming_candidates_and_what_to_add(tmp_path):
    """Sources that cannot yield vocab_size - base pieces fail in seconds, before the BPE training: no train files
    are given, so reaching the train source would fail differently; nothing is written."""
    import time

    section = {"vocab_size": 32000 + 30000,
               "candidates": {"sources": [{"kind": "train", "vocab_size": 8000}, {"kind": "jieba", "min_freq": 1000}]}}
    t0 = time.time()
    with pytest.raises(TokenizerError) as err:
        select_pieces(section, base_tokenizer_dir(), tmp_path / "out", [], seed=1234)
    msg = str(err.value)
    assert msg.startswith("tokenizer.candidates: the configured sources can yield at most")
    assert "sources[0] train: at most 7,741" in msg and "sources[1] jieba: at most" in msg
    assert "needs 30,000" in msg and "{kind: gguf}" in msg and "{kind: jieba}" not in msg
    assert not (tmp_path / "out" / "pieces.jsonl").exists() and not list((tmp_path / "out").glob("*.model"))
    assert time.time() - t0 < 60


def test_capacity_is_checked_at_config_validation_where_knowable():
    from pathlib import Path

    from cpt.core.yamlio import read_yaml
    from cpt.workflow import experiment

    cfg = read_yaml(Path(__file__).resolve().parents[2] / "config" / "colossal-llama-2-7b.yaml")
    cfg["model"]["base"] = {"kind": "tiny"}
    cfg["tokenizer"].pop("candidates")  # the schema's default: one trained BPE of 20,000 pieces
    with pytest.raises(ConfigError, match=r"config key tokenizer\.candidates: the configured sources can yield at "
                                          r"most 19,741 new pieces .* needs 37,104; add .*\{kind: gguf\}"):
        experiment.validate(cfg)
    cfg["tokenizer"]["candidates"] = {"sources": [{"kind": "train", "vocab_size": 40000}]}
    assert experiment.validate(cfg)["tokenizer"]["vocab_size"] == 69104
    cfg["tokenizer"]["candidates"] = {"sources": [{"kind": "train"}, {"kind": "jieba"}]}  # a word list: the step
    assert experiment.validate(cfg)                                                              # checks it, not validation
