"""cpt.model.base: the tiny seeded base model, a user's local LLaMA directory, and the model/tokenizer pairing check."""

from __future__ import annotations

import json
import shutil

import _spm_fixtures as fx
import pytest
import torch
from click.testing import CliRunner
from sentencepiece import sentencepiece_model_pb2 as pb

from cpt.core.errors import ConfigError, ModelError
from cpt.model.base import (
    build_base_model,
    check_model_tokenizer,
    create_tiny_llama,
)
from cpt.model.cli import cli_base_model
from cpt.model.vocab import tokenizer_vocab_size
from cpt.model.weights import read_layout

TINY = {"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 4, "num_key_value_heads": 2,
        "intermediate_size": 64, "max_position_embeddings": 128}


@pytest.fixture(scope="module")
def toks(tokenizer_pair):
    return tokenizer_pair[:2]


def test_tiny_model_has_tokenizer_vocab_and_opens_with_auto_classes(toks, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base, _ = toks
    info = build_base_model({"kind": "tiny", "tiny": {**TINY, "seed": 7}}, base, tmp_path / "m")
    n = tokenizer_vocab_size(base)
    assert info["vocab_size"] == n == len(fx.sp_processor(base))
    assert (tmp_path / "m" / "model.safetensors").is_file()
    assert (tmp_path / "m" / "tokenizer.model").read_bytes() == (base / "tokenizer.model").read_bytes()
    prov = json.loads((tmp_path / "m" / "provenance.json").read_text())
    assert prov["stage"] == "model/base" and prov["model"]["vocab_size"] == n
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "m")
    tok = AutoTokenizer.from_pretrained(tmp_path / "m")
    assert model.config.vocab_size == n and model.config.num_hidden_layers == 1
    assert model.config.hidden_size == 32 and model.config.num_key_value_heads == 2
    ids = tok("The cat 中国人民", return_tensors="pt").input_ids
    assert ids[0, 0].item() == 1  # bos
    assert model(ids).logits.shape == (1, ids.shape[1], n)


def test_tiny_model_same_seed_same_bytes_other_seed_differs(toks, tmp_path):
    base, _ = toks
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        create_tiny_llama(tmp_path / name, base, {**TINY, "seed": seed})
    a, b, c = ((tmp_path / x / "model.safetensors").read_bytes() for x in "abc")
    assert a == b
    assert a != c


def test_tiny_model_bf16_and_tied(toks, tmp_path):
    from safetensors import safe_open

    base, _ = toks
    create_tiny_llama(tmp_path / "m", base, {**TINY, "torch_dtype": "bfloat16", "tie_word_embeddings": True})
    with safe_open(str(tmp_path / "m" / "model.safetensors"), framework="pt") as f:
        keys = set(f.keys())
        assert f.get_tensor("model.embed_tokens.weight").dtype == torch.bfloat16
    assert "lm_head.weight" not in keys
    assert json.loads((tmp_path / "m" / "config.json").read_text())["tie_word_embeddings"] is True


def test_wrong_tokenizer_pairing_is_one_model_error(toks, tmp_path):
    base, ext = toks
    create_tiny_llama(tmp_path / "m", base, TINY)
    check_model_tokenizer(tmp_path / "m", base)  # the right pair passes
    with pytest.raises(ModelError, match="does not match the tokenizer"):
        check_model_tokenizer(tmp_path / "m", ext)


def test_non_llama_model_type_is_rejected(toks, tmp_path):
    base, _ = toks
    create_tiny_llama(tmp_path / "m", base, TINY)
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["model_type"] = "gpt2"
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match="model_type is 'gpt2'"):
        check_model_tokenizer(tmp_path / "m", base)


def test_local_kind_links_checked_model(toks, tmp_path):
    base, ext = toks
    user = tmp_path / "user-llama"
    create_tiny_llama(user, base, TINY)
    info = build_base_model({"kind": "local", "path": str(user)}, base, tmp_path / "out")
    assert info["kind"] == "local" and info["format"] == "safetensors"
    out_w = tmp_path / "out" / "model.safetensors"
    assert out_w.read_bytes() == (user / "model.safetensors").read_bytes()
    assert info["files"]["model.safetensors"] in ("hardlink", "symlink")
    assert read_layout(tmp_path / "out").weight_map == read_layout(user).weight_map
    with pytest.raises(ModelError, match="does not match"):
        build_base_model({"kind": "local", "path": str(user)}, ext, tmp_path / "out2")


def test_local_model_with_other_pieces_same_size_is_rejected(toks, tmp_path):
    base, _ = toks
    user = tmp_path / "user-llama"
    create_tiny_llama(user, base, TINY)
    proto = pb.ModelProto()
    proto.ParseFromString((base / "tokenizer.model").read_bytes())
    proto.pieces[500].piece = proto.pieces[500].piece + "zz"
    (user / "tokenizer.model").write_bytes(proto.SerializeToString())
    with pytest.raises(ModelError, match="pieces differ .*first at id 500"):
        build_base_model({"kind": "local", "path": str(user)}, base, tmp_path / "out")


def test_local_kind_errors_name_the_config_key(toks, tmp_path):
    base, _ = toks
    # the schema's errors (cpt.core.config) name the key; a path that is not a directory is the model step's
    with pytest.raises(ConfigError, match="config key model.base.path: 'path' is a required property"):
        build_base_model({"kind": "local"}, base, tmp_path / "o")
    with pytest.raises(ModelError, match="model.base.path"):
        build_base_model({"kind": "local", "path": str(tmp_path / "nope")}, base, tmp_path / "o")
    with pytest.raises(ConfigError, match="config key model.base.kind: 'huge' is not one of"):
        build_base_model({"kind": "huge"}, base, tmp_path / "o")
    with pytest.raises(ConfigError, match=r"model.base.tiny.num_layers: Additional properties"):
        create_tiny_llama(tmp_path / "o", base, {"num_layers": 2})


def test_bin_checkpoint_layout(toks, tmp_path):
    from transformers import AutoModelForCausalLM

    base, _ = toks
    create_tiny_llama(tmp_path / "m", base, TINY)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "m")
    model.save_pretrained(tmp_path / "b", safe_serialization=False)
    shutil.copy(base / "tokenizer.model", tmp_path / "b")
    layout = read_layout(tmp_path / "b")
    assert layout.format == "bin" and "model.embed_tokens.weight" in layout.weight_map
    check_model_tokenizer(tmp_path / "b", base)


def test_cli_base_model(toks, tmp_path):
    base, _ = toks
    res = CliRunner().invoke(cli_base_model, ["--tokenizer", str(base), "--out", str(tmp_path / "m"),
                                              "--layers", "1", "--hidden-size", "32", "--heads", "4",
                                              "--kv-heads", "2", "--intermediate-size", "64", "--seed", "5"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output.strip().splitlines()[-1])["vocab_size"] == tokenizer_vocab_size(base)
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["num_hidden_layers"] == 1 and cfg["intermediate_size"] == 64


def test_workflow_local_check_writes_facts(toks, tmp_path):
    from cpt.model.base import write_base_check

    base, ext = toks
    user = tmp_path / "user-llama"
    create_tiny_llama(user, base, TINY)
    facts = write_base_check({"kind": "local", "path": str(user)}, base, tmp_path / "model" / "base_check.json")
    rec = json.loads((tmp_path / "model" / "base_check.json").read_text())
    assert facts["vocab_size"] == rec["model"]["vocab_size"] == tokenizer_vocab_size(base)
    assert rec["stage"] == "model/base" and rec["model"]["format"] == "safetensors"
    with pytest.raises(ModelError, match="does not match"):
        write_base_check({"kind": "local", "path": str(user)}, ext, tmp_path / "x.json")
    with pytest.raises(ConfigError, match="model.base.path"):
        write_base_check({"kind": "local", "path": None}, base, tmp_path / "x.json")
    with pytest.raises(ModelError, match="model.base.path"):
        write_base_check({"kind": "local", "path": str(tmp_path / "nope")}, base, tmp_path / "x.json")
