"""cpt.dataset end to end on random corpora of real text: nothing lost, exact masks, seeded bytes, stage configs."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from _dataset_support import build_tokenizer, random_corpus
from click.testing import CliRunner

from cpt.core.errors import ConfigError, RecordError
from cpt.dataset.build import prepare_stage
from cpt.dataset.cli import cli_prepare_pretrain, cli_prepare_sft
from cpt.dataset.selection import select_stage
from cpt.dataset.shards import load_buckets
from cpt.dataset.tokenized import Corpus, tokenize_corpus


@pytest.fixture(scope="module")
def tokdir(tmp_path_factory):
    return build_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    recs = random_corpus(d / "part-a.jsonl", 500, seed=1, categories=("zh_news", "en_book", "zh_misc"),
                         max_chars=900, source_share=0.4)
    recs += random_corpus(d / "sub" / "part-b.jsonl", 200, seed=2, categories=("zh_news", "en_book"),
                          max_chars=300, source_share=0.0)
    return d, recs


def _cfg(**stage):
    return {"max_length": 128, "num_bins": 4, "seed": 11, "stages": {"s": stage}}


def _all_rows(stage_dir):
    rows = []
    for ds in load_buckets(stage_dir):
        rows.extend(ds.to_list())
    return rows


def _docs(rows):
    """Multiset of documents (their token tuples) in the output."""
    out = Counter()
    for r in rows:
        o = 0
        for n in r["doc_lengths"]:
            out[tuple(r["input_ids"][o:o + n])] += 1
            o += n
    return out


def _arrow_digests(stage_dir):
    return {str(p.relative_to(stage_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(stage_dir).rglob("*")) if p.suffix == ".arrow" or p.name == "state.json"}


@pytest.fixture(scope="module")
def built(tokdir, corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    m = prepare_stage([corpus[0]], tokdir, out / "s", _cfg(), "s", progress=False)
    return out / "s", m


def test_nothing_lost_and_labels_exact(built, tokdir, corpus):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tokdir))
    stage_dir, m = built
    rows = _all_rows(stage_dir)

    def enc(x):
        return tok(x, add_special_tokens=False, split_special_tokens=True)["input_ids"] if x else []

    recs = corpus[1]
    target_in = sum(len(enc(r["target"])) + 1 for r in recs)
    tokens_in = sum(len(enc(r["source"])) + len(enc(r["target"])) + 2 for r in recs)
    target_out = sum(sum(1 for x in r["labels"] if x != -100) for r in rows)
    tokens_out = sum(len(r["input_ids"]) for r in rows)
    skipped = sum(m["tokens"]["skipped"].values())
    assert target_out == target_in == m["num_target_tokens"]
    assert tokens_out == tokens_in - skipped == m["num_tokens"]
    assert set(m["tokens"]["skipped"]) <= {"all_labels_masked"} and m["tokens"]["lost_by_packing"] == 0
    assert m["documents"]["in_corpus"] == len(recs) == m["documents"]["selected"]
    for r in rows:
        assert len(r["input_ids"]) <= 128 and sum(r["doc_lengths"]) == len(r["input_ids"])
        assert any(x != -100 for x in r["labels"])
        assert all(x == -100 or x == i for x, i in zip(r["labels"], r["input_ids"]))
    # every whole document is bos + source (masked) + target + eos
    whole = {tuple([tok.bos_token_id, *enc(r["source"]), *enc(r["target"]), tok.eos_token_id]): r for r in recs}
    seen = 0
    for r in rows:
        o = 0
        for n in r["doc_lengths"]:
            ids = tuple(r["input_ids"][o:o + n])
            if ids in whole:
                n_src = 1 + len(enc(whole[ids]["source"]))
                assert r["labels"][o:o + n_src] == [-100] * n_src
                assert r["labels"][o + n_src:o + n] == list(ids[n_src:])
                seen += 1
            o += n
    fitting = [k for k in whole if len(k) <= 128]
    assert len(fitting) > 100 and seen == sum(1 for r in recs if len(enc(r["source"])) + len(enc(r["target"])) + 2 <= 128)
    assert m["padding_fraction"] < 0.05


def test_buckets_hold_a_quarter_of_every_category(built):
    _, m = built
    assert m["buckets"] == [f"bucket-{i:05d}" for i in range(4)]
    for cat, info in m["selection"]["categories"].items():
        per = [b["tokens_per_category"][cat] for b in m["bucket_detail"]]
        assert sum(per) == info["tokens_selected"]
        assert max(abs(p - info["tokens_selected"] / 4) for p in per) <= 0.1 * info["tokens_selected"] / 4 + 400


def test_same_seed_same_bytes_other_seed_same_content(built, tokdir, corpus, tmp_path):
    stage_dir, _ = built
    prepare_stage([corpus[0]], tokdir, tmp_path / "again", _cfg(), "s", progress=False,
                  cache_dir=tmp_path / "cache")
    assert _arrow_digests(stage_dir) == _arrow_digests(tmp_path / "again")
    cfg = _cfg()
    cfg["seed"] = 12
    prepare_stage([corpus[0]], tokdir, tmp_path / "other", cfg, "s", progress=False, cache_dir=tmp_path / "cache")
    assert _arrow_digests(stage_dir) != _arrow_digests(tmp_path / "other")
    a, b = _all_rows(stage_dir), _all_rows(tmp_path / "other")
    assert [r["input_ids"] for r in a[:20]] != [r["input_ids"] for r in b[:20]]
    # no overlong documents at this length -> whole documents only, so the document multisets must agree
    cfg["max_length"] = 4096
    cfg2 = dict(cfg, seed=11)
    prepare_stage([corpus[0]], tokdir, tmp_path / "l1", cfg, "s", progress=False, cache_dir=tmp_path / "cache")
    prepare_stage([corpus[0]], tokdir, tmp_path / "l2", cfg2, "s", progress=False, cache_dir=tmp_path / "cache")
    assert _docs(_all_rows(tmp_path / "l1")) == _docs(_all_rows(tmp_path / "l2"))


def test_worker_processes_give_the_same_bytes(built, tokdir, corpus, tmp_path):
    stage_dir, _ = built
    cfg = _cfg()
    cfg["num_workers"] = 2
    cfg["block_lines"] = 97
    prepare_stage([corpus[0]], tokdir, tmp_path / "mp", cfg, "s", progress=False)
    assert _arrow_digests(stage_dir) == _arrow_digests(tmp_path / "mp")


def test_stage_config_caps_weights_and_replay(tokdir, corpus, tmp_path):
    tokenize_corpus([corpus[0]], tokdir, tmp_path / "cache", progress=False)
    c = Corpus(tmp_path / "cache")
    total = {k: v["tokens"] for k, v in c.info["categories"].items()}
    cfg = {"max_length": 128, "num_bins": 3, "seed": 5, "stages": {
        "base": {"categories": {"en_book": {}, "zh_misc": {"max_tokens": 5000}}},
        "mix": {"categories": {"zh_news": {"weight": 3}, "en_book": {"weight": 1}}},
        "inject": {"categories": ["zh_news"], "replay": {"from": ["base"], "share": 0.25}},
    }}
    sel, rep = select_stage(c, cfg, "base")
    assert sel["en_book"].tokens == total["en_book"]
    assert 5000 - 2000 < sel["zh_misc"].tokens <= 5000
    sel, rep = select_stage(c, cfg, "mix")
    ratio = sel["zh_news"].tokens / sel["en_book"].tokens
    assert abs(ratio - 3) < 0.1, ratio
    sel, rep = select_stage(c, cfg, "inject")
    base_sel, _ = select_stage(c, cfg, "base")
    replay = rep["replay"]["tokens"]
    own = rep["categories"]["zh_news"]["tokens_selected"]
    assert abs(replay / (replay + own) - 0.25) < 0.02
    assert set(sel) == {"zh_news", "en_book", "zh_misc"}
    for cat in ("en_book", "zh_misc"):
        assert set(sel[cat].rows.tolist()) <= set(base_sel[cat].rows.tolist())
    assert select_stage(c, cfg, "inject")[0]["en_book"].rows.tolist() == sel["en_book"].rows.tolist()
    m = prepare_stage([corpus[0]], tokdir, tmp_path / "inject", cfg, "inject", progress=False,
                      cache_dir=tmp_path / "cache")
    assert m["num_tokens"] == sum(s.tokens for s in sel.values()) - sum(m["tokens"]["skipped"].values())
    assert len(m["buckets"]) == 3


@pytest.mark.parametrize("stage, key", [
    ({"categories": {"nope": {}}}, "dataset.stages.s.categories"),
    ({"categories": {"zh_news": {"weight": 1}, "en_book": {}}}, "weight to every category"),
    ({"categories": {"zh_news": {"cap": 1}}}, "categories.zh_news.cap: Additional properties"),
    ({"replay": {"from": ["s"], "share": 0.2}}, "replay cycle s -> s"),
    ({"replay": {"from": ["zz"], "share": 0.2}}, "replay.from"),
    ({"replay": {"from": ["s"], "share": 1.0}}, "share"),
    ({"kind": "dpo"}, "kind"),
    ({"overlong": "fold"}, "overlong"),
])
def test_config_errors_name_the_key(tokdir, corpus, tmp_path, stage, key):
    tokenize_corpus([corpus[0]], tokdir, tmp_path / "cache", progress=False)
    with pytest.raises(ConfigError, match=key):
        select_stage(Corpus(tmp_path / "cache"), _cfg(**stage), "s")


def test_bad_record_stops_with_file_and_line(tokdir, tmp_path):
    p = tmp_path / "in" / "c.jsonl"
    p.parent.mkdir()
    p.write_text('{"source": "", "target": "ok", "category": "c"}\n{"source": "", "target": 1, "category": "c"}\n')
    with pytest.raises(RecordError, match="c.jsonl:2"):
        prepare_stage([p.parent], tokdir, tmp_path / "o", _cfg(), "s", progress=False)
    cfg = _cfg()
    cfg["on_bad_record"] = "skip"
    m = prepare_stage([p.parent], tokdir, tmp_path / "o", cfg, "s", progress=False)
    assert m["documents"]["records_skipped_at_tokenization"] == {"ill_typed": 1}   # cpt.artifacts.records' reason
    assert m["record_validation"]["lines"] == 2 and m["record_validation"]["records"] == 1
    assert m["record_validation"]["examples"][0].endswith("c.jsonl:2: ill_typed: field 'target' must be a string, "
                                                          "got integer")
    assert m["num_sequences"] == 1


def test_bad_records_across_blocks_and_files_counted_by_reason(tokdir, tmp_path):
    """Blocks of 2 lines: line numbers stay file lines; an empty file is cpt.artifacts.records' empty_file; blank lines are
    counted, not skipped; a cache tokenized with skip is not reused for on_bad_record: raise."""
    d = tmp_path / "in"
    d.mkdir()
    good = json.dumps({"source": "", "target": "ok", "category": "c"})
    (d / "a.jsonl").write_text("\n".join([good, good, "", good, '{"source": "", "target": " ", "category": "c"}',
                                          "[1]", good]) + "\n")
    (d / "b.jsonl").write_text("\n")
    cfg = _cfg()
    cfg.update(on_bad_record="skip", block_lines=2)
    cache = tmp_path / "cache"
    m = prepare_stage([d], tokdir, tmp_path / "o", cfg, "s", cache_dir=cache, progress=False)
    v = m["record_validation"]
    assert m["documents"]["records_skipped_at_tokenization"] == {"empty_file": 1, "empty_target": 1,
                                                                   "not_object": 1}
    assert (v["files"], v["lines"], v["records"], v["blank_lines"]) == (2, 8, 4, 2)
    assert any("a.jsonl:5: empty_target" in x for x in v["examples"])
    assert any("a.jsonl:6: not_object" in x for x in v["examples"])
    assert m["documents"]["in_corpus"] == 4
    cfg["on_bad_record"] = "raise"
    with pytest.raises(RecordError, match="a.jsonl:5: empty_target"):
        prepare_stage([d], tokdir, tmp_path / "o2", cfg, "s", cache_dir=cache, progress=False)
    with pytest.raises(RecordError, match="a.jsonl:5: empty_target") as e:   # from a worker process, same error
        prepare_stage([d], tokdir, tmp_path / "o2", {**cfg, "num_workers": 2}, "s", progress=False)
    assert e.value.reason == "empty_target" and e.value.line == 5
    assert any("dataset.on_bad_record: skip" in n for n in e.value.__notes__)
    (d / "a.jsonl").write_text(good + "\n")
    with pytest.raises(RecordError, match="b.jsonl: empty_file"):
        prepare_stage([d], tokdir, tmp_path / "o3", cfg, "s", cache_dir=cache, progress=False)


def test_overlong_sources_give_counted_skips_not_nan(tokdir, tmp_path):
    p = tmp_path / "in" / "c.jsonl"
    p.parent.mkdir()
    p.write_text(json.dumps({"source": "long prompt " * 200, "target": "answer", "category": "c"}) + "\n")
    m = prepare_stage([p], tokdir, tmp_path / "o", _cfg(), "s", progress=False)
    assert m["tokens"]["skipped"]["all_labels_masked"] > 0
    assert len(m["buckets"]) == 1 and len(m["empty_buckets"]) == 3   # one document, four bins
    assert all((tmp_path / "o" / b).is_dir() for b in m["buckets"])
    rows = _all_rows(tmp_path / "o")
    assert all(any(x != -100 for x in r["labels"]) for r in rows)
    assert m["tokens"]["target_out"] == m["tokens"]["target_selected"]


def test_cli_pretrain_and_sft(tokdir, corpus, tmp_path):
    r = CliRunner().invoke(cli_prepare_pretrain, [
        "--data_input_dirs", str(corpus[0]), "--tokenizer_dir", str(tokdir), "--data_output_dirs",
        str(tmp_path / "pt"), "--max_length", "256", "--num_spliced_dataset_bins", "2", "--no_progress"])
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "pt" / "manifest.json").read_text())
    assert m["buckets"] == ["bucket-00000", "bucket-00001"] and m["max_length"] == 256
    assert (tmp_path / "pt" / "provenance.json").is_file()
    assert not list((tmp_path / "pt").glob(".tokenized-*"))
    sft = tmp_path / "sft" / "chat.jsonl"
    sft.parent.mkdir()
    convs = [{"messages": [{"from": "human", "content": f"question {i}"},
                           {"from": "assistant", "content": f"answer {i} " * (i % 7 + 1)}]} for i in range(30)]
    sft.write_text("".join(json.dumps(c) + "\n" for c in convs))
    r = CliRunner().invoke(cli_prepare_sft, [
        "--data_input_dirs", str(sft), "--tokenizer_dir", str(tokdir), "--data_output_dirs", str(tmp_path / "s"),
        "--max_length", "512", "--no_progress"])
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert m["num_sequences"] == 30 and m["buckets"] == ["bucket-00000"] and m["kind"] == "sft"
    rows = _all_rows(tmp_path / "s")
    assert all(len(r["doc_lengths"]) == 1 for r in rows)
    assert sorted(r["input_ids"][-1] for r in rows) == [2] * 30      # each ends with the assistant's </s>


def test_tokenizer_json_dir_gives_the_same_bytes(built, tokdir, corpus, tmp_path):
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(str(tokdir)).save_pretrained(str(tmp_path / "fast"))
    prepare_stage([corpus[0]], tmp_path / "fast", tmp_path / "o", _cfg(), "s", progress=False)
    arrow = {k: v for k, v in _arrow_digests(built[0]).items() if k.endswith(".arrow")}
    assert arrow == {k: v for k, v in _arrow_digests(tmp_path / "o").items() if k.endswith(".arrow")}


def test_replay_reads_what_the_earlier_stage_selected(tokdir, corpus, tmp_path):
    from cpt.core.config import dataset_config
    from cpt.dataset.selection import read_selection

    # the workflow's shape: the dataset section with only the built stage in `stages` (cpt.core.config.dataset_config)
    full = {"dataset": {"max_length": 128, "num_bins": 2, "seed": 3, "stages": {
        "base": {"categories": {"en_book": {"max_tokens": 8000}, "zh_misc": {}}},
        "inj": {"categories": ["zh_news"], "replay": {"from": ["base"], "share": 0.2}}}}}
    base, inj = dataset_config(full, "base"), dataset_config(full, "inj")
    assert list(inj["stages"]) == ["inj"]
    mb = prepare_stage([corpus[0]], tokdir, tmp_path / "base", base, "base", progress=False)
    mi = prepare_stage([corpus[0]], tokdir, tmp_path / "inj", inj, "inj", progress=False,
                       prior={"base": tmp_path / "base"})
    tokenize_corpus([corpus[0]], tokdir, tmp_path / "cache", progress=False)
    c = Corpus(tmp_path / "cache")
    base_rows = read_selection(tmp_path / "base", c, "base")
    inj_rows = read_selection(tmp_path / "inj", c, "inj")
    assert set(base_rows) == {"en_book", "zh_misc"}
    for cat in ("en_book", "zh_misc"):
        assert set(inj_rows.get(cat, np.zeros(0)).tolist()) <= set(base_rows[cat].tolist())
    rep = mi["selection"]["replay"]
    assert rep["tokens"] > 0 and abs(rep["tokens"] / mi["tokens"]["selected"] - 0.2) < 0.03
    assert mb["selection"]["categories"]["en_book"]["tokens_selected"] <= 8000
    (tmp_path / "base" / "selection.arrow").unlink()
    with pytest.raises(Exception, match="selection.arrow"):
        prepare_stage([corpus[0]], tokdir, tmp_path / "inj2", inj, "inj", progress=False,
                      prior={"base": tmp_path / "base"})
    with pytest.raises(ConfigError, match="replay.from: 'base' is neither a stage"):
        prepare_stage([corpus[0]], tokdir, tmp_path / "inj3", inj, "inj", progress=False)



def test_all_records_skipped_is_an_error_naming_the_stage_and_the_counts(tokdir, tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    (d / "a.jsonl").write_text('{"source": "", "target": " ", "category": "c"}\n[1]\n{"target": 3}\n')
    cfg = _cfg()
    cfg["on_bad_record"] = "skip"
    from cpt.core.errors import DatasetError

    with pytest.raises(DatasetError) as e:
        prepare_stage([d], tokdir, tmp_path / "o", cfg, "s", progress=False)
    msg = str(e.value)
    assert "dataset stage 's'" in msg and "no sequence left" in msg
    assert "empty_target 1" in msg and "not_object 1" in msg and "0 documents in the tokenized corpus" in msg
    assert not (tmp_path / "o" / "manifest.json").exists()  # no manifest that training would accept


def test_manifest_records_the_tokenizer_identity(tokdir, corpus, tmp_path):
    from cpt.artifacts.identity import tokenizer_identity

    m = prepare_stage([corpus[0]], tokdir, tmp_path / "o", _cfg(), "s", progress=False)
    assert m["tokenizer_identity"] == tokenizer_identity(tokdir)
    assert json.loads((tmp_path / "o" / "manifest.json").read_text())["tokenizer_identity"]["vocab_size"] == \
        m["vocab_size"]
