"""Step 1.4: the LLaMA-2 tokenizer rebuilt from llama.cpp's GGUF vocabulary, checked against llama.cpp's references."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from tokenizer_fixtures import base_tokenizer_dir

from cpt.core.errors import ConfigError, TokenizerError
from cpt.core.sources import read_member
from cpt.tokenizer import spm
from cpt.tokenizer.base import AGREEMENT_SAMPLE, DEFAULT_MEMBER, build_base_tokenizer, reference_cases
from cpt.tokenizer.from_gguf import parse_reference, proto_from_gguf, read_gguf_vocab
from cpt.tokenizer.hf import hf_encode, load_hf


@pytest.fixture(scope="module")
def proto():
    return proto_from_gguf(read_member("llama-cpp-python", DEFAULT_MEMBER))


@pytest.fixture(scope="module")
def cases():
    return reference_cases("llama-cpp-python", DEFAULT_MEMBER)


def test_reference_file_format(cases):
    assert len(cases) == 46
    texts = dict(cases)
    assert texts["Hello world"] == [15043, 3186]
    assert texts[""] == []  # the empty text is a case of its own
    assert texts[" Hello"] == [29871, 15043]  # dummy prefix + "▁Hello"
    with pytest.raises(TokenizerError, match="texts in .inp"):
        parse_reference("a\n__ggml_vocab_test__\nb\n__ggml_vocab_test__\n", " 1\n")


def test_rebuilt_model_is_llama(proto):
    assert len(proto.pieces) == 32000
    types = Counter(p.type for p in proto.pieces)
    assert types[spm.BYTE] == 256 and types[spm.CONTROL] == 2 and types[spm.UNKNOWN] == 1
    assert [p.piece for p in proto.pieces[:3]] == ["<unk>", "<s>", "</s>"]
    assert proto.pieces[3].piece == "<0x00>" and proto.pieces[3].type == spm.BYTE
    assert proto.trainer_spec.model_type == spm.sp_pb2.TrainerSpec.BPE and proto.trainer_spec.byte_fallback
    ns = proto.normalizer_spec
    assert ns.name == "identity" and ns.add_dummy_prefix and not ns.remove_extra_whitespaces
    vocab = read_gguf_vocab(read_member("llama-cpp-python", DEFAULT_MEMBER))
    assert [p.score for p in proto.pieces] == pytest.approx(vocab.scores)


def test_46_reference_tokenizations_through_sentencepiece(proto, cases):
    sp = spm.processor(proto)
    for text, ids in cases:
        assert sp.encode(text, out_type=int) == ids, text


def test_46_reference_tokenizations_through_hf_slow_and_fast(cases):
    d = base_tokenizer_dir()
    for fast in (False, True):
        tok = load_hf(d, fast)
        assert type(tok).__name__ == ("LlamaTokenizerFast" if fast else "LlamaTokenizer")
        assert hf_encode(tok, [t for t, _ in cases]) == [ids for _, ids in cases]
        assert tok.encode("Hello world") == [1, 15043, 3186]  # BOS added by default


def test_hf_directory_files_and_fast_equals_slow():
    d = base_tokenizer_dir()
    for name in ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.json",
                 "provenance.json", "conformance.json"):
        assert (d / name).is_file(), name
    assert json.loads((d / "tokenizer_config.json").read_text())["tokenizer_class"] == "LlamaTokenizer"
    sample = list(AGREEMENT_SAMPLE)
    assert any("中" in t for t in sample) and any("🦙" in t for t in sample) and any("\n" in t for t in sample)
    slow, fast = load_hf(d, False), load_hf(d, True)
    assert hf_encode(slow, sample) == hf_encode(fast, sample)
    conformance = json.loads((d / "conformance.json").read_text())
    assert conformance["reference"]["matched"] == 46


def test_legacy_false_would_break_the_fast_tokenizer(tmp_path):
    """Why tokenizer_config says legacy: true — with legacy false the fast tokenizer drops the dummy prefix
    before a leading space."""
    import transformers

    d = base_tokenizer_dir()
    fast = transformers.LlamaTokenizerFast.from_pretrained(str(d), from_slow=True, legacy=False)
    assert fast.encode(" Hello", add_special_tokens=False) != [29871, 15043]


def test_local_kind_validates_and_normalises(tmp_path, proto):
    src = tmp_path / "llama"
    src.mkdir()
    import transformers

    spm.save_proto(proto, src / "tokenizer.model")
    template = "{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}"  # a chat model's own
    (src / "tokenizer_config.json").write_text(json.dumps({"chat_template": template}), encoding="utf-8")
    report = build_base_tokenizer({"base": {"kind": "local", "path": str(src)}}, tmp_path / "out")
    assert report["vocab_size"] == 32000 and report["agreement"]["mismatches"] == {"slow": 0, "fast": 0}
    assert (tmp_path / "out" / "tokenizer.json").is_file()
    assert transformers.AutoTokenizer.from_pretrained(str(tmp_path / "out")).chat_template == template
    with pytest.raises(ConfigError, match="tokenizer.base.path"):
        build_base_tokenizer({"base": {"kind": "local", "path": str(tmp_path / "nowhere")}}, tmp_path / "x")
    bad = spm.copy_proto(proto)
    bad.trainer_spec.model_type = spm.sp_pb2.TrainerSpec.UNIGRAM
    bad.trainer_spec.byte_fallback = False
    spm.save_proto(bad, tmp_path / "bad" / "tokenizer.model")
    with pytest.raises(TokenizerError, match="not BPE.*byte_fallback is off"):
        build_base_tokenizer({"base": {"kind": "local", "path": str(tmp_path / "bad")}}, tmp_path / "y")


def test_bpe_rule_in_python_matches_sentencepiece(proto):
    sp = spm.processor(proto)
    scores = spm.merge_scores(proto)
    texts = ["Hello world", "  The quick brown fox jumps over the lazy dog.", "tokenization_is_hard 12345",
             "It's a truth universally acknowledged", "I've been 'told he's there"]
    for t in texts:
        assert spm.bpe_segment(spm.normalize(t), scores) == sp.encode(t, out_type=str), t
