"""cpt.dataset.sft: templates and loss masks token by token, turn dropping, bad-record classes."""

from __future__ import annotations

import json

import pytest
from _dataset_support import build_tokenizer

from cpt.artifacts.dataset import IGNORE_INDEX
from cpt.artifacts.records import REASONS, RecordStats, iter_records
from cpt.core.errors import ConfigError, RecordError, TokenizerError
from cpt.dataset.sft import SYSTEM_PROMPT, SFTEncoder, get_template, tokenize_sft_lines

L3 = ["<|begin_of_text|>", "<|eot_id|>"]


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(build_tokenizer(tmp_path_factory.mktemp("tok"))))


@pytest.fixture(scope="module")
def tok3(tmp_path_factory):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(build_tokenizer(tmp_path_factory.mktemp("tok3"), extra_special=L3)))


def enc(tok, text):
    return tok(text, add_special_tokens=False, split_special_tokens=True)["input_ids"] if text else []


CONV = [("human", "What is the capital of China?"), ("assistant", "Beijing."),
        ("human", "和上海比呢？"), ("assistant", "上海是最大的城市。</s> stays text")]


@pytest.mark.parametrize("name", ["llama2", "llama3"])
def test_llama_templates_token_by_token(tok, tok3, name):
    t = tok if name == "llama2" else tok3
    begin, end = ("<s>", "</s>") if name == "llama2" else L3
    b, e = t.convert_tokens_to_ids(begin), t.convert_tokens_to_ids(end)
    ids, labels, dropped = SFTEncoder(t, name, 4096).encode_many([CONV])[0]
    exp_ids, exp_labels = [t.bos_token_id, *enc(t, SYSTEM_PROMPT)], None
    exp_labels = [IGNORE_INDEX] * len(exp_ids)
    for role, text in CONV:
        head = enc(t, "Human: " if role == "human" else "Assistant: ") + [b]
        body = enc(t, text) + [e]
        exp_ids += head + body
        exp_labels += [IGNORE_INDEX] * len(head) + (body if role == "assistant" else [IGNORE_INDEX] * len(body))
    assert ids == exp_ids and labels == exp_labels and dropped == 0
    # the loss covers exactly the assistant texts and their end tokens
    trained = [x for x in labels if x != IGNORE_INDEX]
    assert trained == enc(t, "Beijing.") + [e] + enc(t, CONV[3][1]) + [e]
    assert ids.count(e) == 4       # "</s>" inside content stays text


def test_plain_template(tok):
    ids, labels, _ = SFTEncoder(tok, "plain", 4096).encode_many([CONV[:2]])[0]
    nl = enc(tok, "\n")
    exp = [tok.bos_token_id, *enc(tok, "Human: "), *enc(tok, CONV[0][1]), *nl,
           *enc(tok, "Assistant: "), *enc(tok, "Beijing."), tok.eos_token_id, *nl]
    assert ids == exp
    assert [x for x in labels if x != IGNORE_INDEX] == enc(tok, "Beijing.") + [tok.eos_token_id]


def test_turns_dropped_from_the_end_to_fit(tok):
    full = SFTEncoder(tok, "llama2", 4096).encode_many([CONV])[0][0]
    first_pair = SFTEncoder(tok, "llama2", 4096).encode_many([CONV[:2]])[0][0]
    ids, labels, dropped = SFTEncoder(tok, "llama2", len(full) - 1).encode_many([CONV])[0]
    assert ids == first_pair and dropped == 1
    assert SFTEncoder(tok, "llama2", len(full)).encode_many([CONV])[0][2] == 0
    assert SFTEncoder(tok, "llama2", len(first_pair) - 1).encode_many([CONV])[0] is None


def test_generation_prompt_is_the_training_prefix(tok):
    e = SFTEncoder(tok, "llama2", 4096)
    ids, labels, _ = e.encode_many([CONV])[0]
    prompt = e.encode_prompt(CONV[:2], CONV[2][1])
    assert ids[:len(prompt)] == prompt
    assert labels[len(prompt) - 1] == IGNORE_INDEX and labels[len(prompt)] != IGNORE_INDEX


def test_llama3_template_needs_its_tokens(tok):
    with pytest.raises(TokenizerError, match="<\\|begin_of_text\\|>"):
        SFTEncoder(tok, "llama3", 4096)
    with pytest.raises(ConfigError, match="template"):
        get_template("vicuna")


def _line(obj):
    return (json.dumps(obj) if not isinstance(obj, str) else obj).encode()


GOOD = {"messages": [{"from": "human", "content": "hi"}, {"from": "assistant", "content": "hello"}]}


H, A = {"from": "human", "content": "x"}, {"from": "assistant", "content": "y"}


@pytest.mark.parametrize("obj, reason", [
    ("{oops", "invalid_json"),
    (b'{"messages": [{"from": "human", "content": "\xff"}]}', "non_utf8"),
    ([], "not_object"),
    ({"msgs": []}, "missing_field"),
    ({"messages": "hi"}, "ill_typed"),
    ({"messages": []}, "empty_messages"),
    ({"messages": ["hi"]}, "ill_typed"),
    ({"messages": [{"from": "human"}, A]}, "missing_field"),
    ({"messages": [{"from": "system", "content": "x"}, A]}, "unknown_role"),
    ({"messages": [{"from": "Human", "content": "x"}, A]}, "unknown_role"),
    ({"messages": [{"from": "human", "content": 3}, A]}, "ill_typed"),
    ({"messages": [H, {"from": "assistant", "content": " \n"}]}, "empty_content"),
    ({**GOOD, "category": 5}, "ill_typed"),
    ({**GOOD, "category": None}, "ill_typed"),
    ({"messages": [A, H]}, "first_not_human"),
    ({"messages": [H, H, A]}, "repeated_role"),
    ({"messages": [H, A, A]}, "repeated_role"),
    ({"messages": [H]}, "no_assistant"),
])
def test_bad_conversations_error_or_counted_skip(tok, tmp_path, obj, reason):
    """Every bad-conversation class: cpt.artifacts.records' RecordError (reason, file:line, same text) or a counted skip."""
    bad = obj if isinstance(obj, bytes) else _line(obj)
    e = SFTEncoder(tok, "llama2", 4096)
    with pytest.raises(RecordError) as err:
        tokenize_sft_lines(e, [_line(GOOD), bad], "sft/chat.jsonl", 5, "chat", "raise")
    assert err.value.line == 6 and "sft/chat.jsonl:6" in str(err.value) and err.value.reason == reason
    assert any("dataset.on_bad_record: skip" in n for n in err.value.__notes__)
    f = tmp_path / "chat.jsonl"
    f.write_bytes(b"\n" * 5 + bad + b"\n")
    with pytest.raises(RecordError) as v:
        list(iter_records(f, schema="sft"))
    assert str(v.value).replace(str(f), "sft/chat.jsonl") == str(err.value)
    records = RecordStats()
    cats, ids, labels, lines, stats = tokenize_sft_lines(e, [_line(GOOD), bad, b"\n"], "sft/chat.jsonl", 5, "chat",
                                                         "skip", records=records)
    assert cats == ["chat"] and lines == [5] and stats == {}
    assert dict(records.skipped) == {reason: 1} and records.blank_lines == 1 and records.records == 1
    assert reason in REASONS


def test_counts_trailing_turns_shortened_and_too_long(tok):
    base = len(SFTEncoder(tok, "llama2", 4096).encode_many([[("human", "hi"), ("assistant", "hello")]])[0][0])
    e = SFTEncoder(tok, "llama2", base + 10)
    trailing = {"messages": GOOD["messages"] + [{"from": "human", "content": "and?"}], "category": "qa"}
    long = {"messages": [{"from": "human", "content": "word " * 100}, {"from": "assistant", "content": "x"}]}
    two = {"messages": GOOD["messages"] + [{"from": "human", "content": "more " * 30},
                                           {"from": "assistant", "content": "ok"}]}
    cats, ids, labels, lines, stats = tokenize_sft_lines(e, [_line(trailing), _line(long), _line(two)], "c.jsonl", 1,
                                                         "chat", "raise")
    assert cats == ["qa", "chat"] and lines == [1, 3]
    assert stats == {"trailing_human_turn_dropped": 1, "skipped:first_turn_too_long": 1,
                     "turns_dropped_to_fit": 1, "conversations_shortened": 1}
    assert all(len(x) <= base + 10 for x in ids) and len(ids[1]) == base
