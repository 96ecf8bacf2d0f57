"""The real-model experiment (config/smollm2-zh.yaml) shrunk to a few steps per stage (smollm2_shrunk.yaml overlay),
through the real Snakefile: SmolLM2-135M from its GGUF, byte-level BPE extension, embeddings-only injection,
injection, replay, chatml SFT, evaluation, report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from .conftest import REPO, snakemake, write_config

pytestmark = [pytest.mark.workflow, pytest.mark.slow]
OVERLAY = Path(__file__).with_name("smollm2_shrunk.yaml")
RULES = {"corpus_raw", "corpus_split", "corpus_sft", "clean_prepare", "clean_finalize", "tokenizer_base",
         "tokenizer_pieces", "tokenizer_extended", "tokenizer_compression", "model_base", "model_init",
         "dataset_stage", "train", "evaluate_idioms", "evaluate", "evaluate_generate", "report"}


def merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    config = merge(yaml.safe_load((REPO / "config" / "smollm2-zh.yaml").read_text(encoding="utf-8")),
                   yaml.safe_load(OVERLAY.read_text(encoding="utf-8")))
    workdir = tmp_path_factory.mktemp("smollm2")
    cfg = write_config(workdir / "smollm2.yaml", config)
    out = snakemake(workdir, cfg, timeout=3600)
    return workdir, cfg, config, workdir / "results" / config["experiment"], out.stdout + out.stderr


def test_every_rule_ran_and_nothing_is_left(run):
    workdir, cfg, _, _, log = run
    ran = set(re.findall(r"^(?:local)?rule (\w+):", log, flags=re.M)) | \
        set(re.findall(r"\(Rule: (\w+)\)", log))
    assert RULES <= ran, RULES - ran
    again = snakemake(workdir, cfg, "-n")
    assert "Nothing to be done" in again.stdout + again.stderr


def test_extended_tokenizer_keeps_english_ids(run):
    from cpt.tokenizer.registry import open_tokenizer

    _, _, config, res, _ = run
    base, ext = open_tokenizer(res / "tokenizer/base"), open_tokenizer(res / "tokenizer/extended")
    assert base.family == ext.family == "bpe" and len(base) == 49152
    assert len(ext) == config["tokenizer"]["vocab_size"] and ext.pieces()[:49152] == base.pieces()
    english = []
    for f in sorted((res / "corpus/heldout").glob("en_*.jsonl")):
        english += [json.loads(line)["target"] for line in f.read_text(encoding="utf-8").splitlines()]
    assert english and ext.encode(english) == base.encode(english)
    report = json.loads((res / "tokenizer/extended/expansion.json").read_text(encoding="utf-8"))
    assert report["english"]["identical"] and report["agreement"]["mismatches"] == {"fast": 0}
    zh = [json.loads(line)["target"] for line in (res / "corpus/heldout/zh_news.jsonl").read_text().splitlines()]
    assert sum(map(len, ext.encode(zh))) < sum(map(len, base.encode(zh)))


def test_models_and_sft_template(run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, _, _, res, _ = run
    prov = json.loads((res / "model/base/provenance.json").read_text(encoding="utf-8"))
    assert len(prov["model"]["gguf_sha256"]) == 64 and prov["model"]["num_hidden_layers"] == 30
    sft = res / "train/sft/final"
    model = AutoModelForCausalLM.from_pretrained(sft)
    tok = AutoTokenizer.from_pretrained(sft)
    assert type(model).__name__ == "LlamaForCausalLM" and model.config.vocab_size >= len(tok)
    ids = tok.apply_chat_template([{"role": "user", "content": "你好"}], add_generation_prompt=True)
    assert tok.decode(ids).endswith("<|im_start|>assistant\n")


def test_zh_bits_per_byte_reported(run):
    _, _, config, res, _ = run
    for point in config["evaluate"]["points"]:
        bpb = json.loads((res / "evaluate" / point / "bpb.json").read_text(encoding="utf-8"))
        text = json.dumps(bpb)
        assert "zh" in text and "en" in text, point
    summary = (res / "report" / "summary.md").read_text(encoding="utf-8")
    assert "Bits per byte" in summary and "sft" in summary


def test_prompt_generations_at_every_point_match_plain_transformers(run):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, _, config, res, _ = run
    gen = config["evaluate"]["generate"]
    recs = {p: [json.loads(x) for x in (res / "generations" / p / "generations.jsonl").read_text().splitlines()]
            for p in config["evaluate"]["points"]}
    for p, rows in recs.items():
        assert [(r["index"], r["lang"]) for r in rows if r["form"] == "plain"] == [(0, "en"), (1, "zh")], p
    # the SFT model's tokenizer carries chatml: its prompts were also rendered as a user turn
    chat = [r for r in recs["sft"] if r["form"] == "chat"]
    tok = AutoTokenizer.from_pretrained(res / "train/sft/final")
    assert len(chat) == 2 and chat[0]["prompt_tokens"] == len(tok.apply_chat_template(
        [{"role": "user", "content": gen["prompts"][0]["text"]}], add_generation_prompt=True))
    # independent greedy decoding of the English prompt at the extended, replayed model
    model = AutoModelForCausalLM.from_pretrained(res / "train/replay/final").eval()
    tok = AutoTokenizer.from_pretrained(res / "train/replay/final")
    enc = tok(gen["prompts"][0]["text"], return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=gen["max_new_tokens"], do_sample=False,
                             pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
    want = tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    got = next(r["output"] for r in recs["replay"] if r["form"] == "plain" and r["index"] == 0)
    assert got == want
    summary = (res / "report" / "summary.md").read_text(encoding="utf-8")
    assert "## Generations" in summary and "中国的首都是" in summary and "vs base_model" in summary
