"""Chat templates: chatml (SmolLM2) and Meta's LLaMA-3 header format next to the recipe's llama2; the Jinja template
written into tokenizer_config.json makes HF `apply_chat_template` build exactly the ids (and generation prompts)
that SFT training used."""

from __future__ import annotations

import json

import pytest
from tokenizer_fixtures import bpe_base_dir

from cpt.artifacts.dataset import IGNORE_INDEX
from cpt.dataset.sft import SFTEncoder, chat_template, write_sft_chat_template
from cpt.tokenizer.registry import open_tokenizer

L3 = ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|end_of_text|>")
CONVS = [
    [("human", "What is the capital of China?"), ("assistant", "Beijing.")],
    [("human", "和上海比呢？"), ("assistant", "上海是最大的城市。"),
     ("human", "  leading spaces\nand lines"), ("assistant", "\n\nstarts with newlines")],
]


def hf_messages(conv):
    return [{"role": "user" if r == "human" else "assistant", "content": t} for r, t in conv]


def saved(tmp_path, name, specials=None):
    from transformers import AutoTokenizer

    base = open_tokenizer(bpe_base_dir(specials) if specials else bpe_base_dir())
    out = base.save(tmp_path / name, chat_template=chat_template(name))
    assert json.loads((out / "tokenizer_config.json").read_text())["chat_template"] == chat_template(name)
    return AutoTokenizer.from_pretrained(str(out))


@pytest.mark.parametrize("name,specials", [("chatml", None), ("llama3_chat", (L3[4], L3[0], L3[3], *L3[1:3]))])
def test_apply_chat_template_equals_training_ids(tmp_path, name, specials):
    tok = saved(tmp_path, name, specials)
    enc = SFTEncoder(tok, name, 4096)
    for conv in CONVS:
        ids, labels, dropped = enc.encode_many([conv])[0]
        assert dropped == 0
        assert ids == tok.apply_chat_template(hf_messages(conv), tokenize=True)
        prompt = enc.encode_prompt(conv[:-2], conv[-2][1])
        assert prompt == tok.apply_chat_template(hf_messages(conv[:-1]), tokenize=True, add_generation_prompt=True)
        # loss exactly on the assistant replies and their closing token
        learned = [i for i, lab in zip(ids, labels) if lab != IGNORE_INDEX]
        close = enc.end_id
        replies = [t for r, t in conv if r == "assistant"]
        assert learned.count(close) == len(replies)
        assert tok.decode(learned) == "".join(r + tok.convert_ids_to_tokens(close) for r in replies)


def test_chatml_and_llama3_render_the_published_formats(tmp_path):
    tok = saved(tmp_path, "chatml")
    text = tok.apply_chat_template(hf_messages(CONVS[0]), tokenize=False)
    assert text == ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
                    "<|im_end|>\n<|im_start|>user\nWhat is the capital of China?<|im_end|>\n"
                    "<|im_start|>assistant\nBeijing.<|im_end|>\n")
    tok3 = saved(tmp_path, "llama3_chat", (L3[4], L3[0], L3[3], *L3[1:3]))
    text = tok3.apply_chat_template(hf_messages(CONVS[0][:1]), tokenize=False, add_generation_prompt=True)
    assert text == ("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWhat is the capital of China?"
                    "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")


def test_sft_model_directory_gets_its_template(tmp_path):
    model, data = tmp_path / "final", tmp_path / "data"
    model.mkdir()
    data.mkdir()
    (model / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|im_end|>"}))
    (data / "manifest.json").write_text(json.dumps({"kind": "pretrain", "settings": {"template": None}}))
    assert write_sft_chat_template(model, data) is None
    assert "chat_template" not in json.loads((model / "tokenizer_config.json").read_text())
    (data / "manifest.json").write_text(json.dumps({"kind": "sft", "settings": {"template": "chatml"}}))
    assert write_sft_chat_template(model, data) == "chatml"
    cfg = json.loads((model / "tokenizer_config.json").read_text())
    assert cfg["chat_template"] == chat_template("chatml") and cfg["eos_token"] == "<|im_end|>"
