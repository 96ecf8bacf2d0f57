"""cpt.corpus: real demo corpora from the pinned archives, deterministic split, idiom SFT data."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest
import yaml
from click.testing import CliRunner

from cpt.artifacts.records import read_records, write_jsonl
from cpt.core.errors import ConfigError, RecordError
from cpt.core.schema import default
from cpt.corpus import build_corpus, build_idiom_sft, heldout_mask, normalize_section, split_corpus
from cpt.corpus.builders import gutenberg_novel, markdown_play_to_text, untag_line
from cpt.corpus.cli import cli_build_corpus, cli_split_corpus

DEFAULT_CATEGORIES = default("corpus.categories")

HAN = re.compile(r"[\u4e00-\u9fff]")
SMALL = {"seed": 7, "categories": {
    name: {**cfg, "max_chars": 30_000 if cfg["lang"] == "zh" else 60_000} for name, cfg in DEFAULT_CATEGORIES.items()
}}


def han_ratio(text: str) -> float:
    return len(HAN.findall(text)) / max(1, len(text))


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus") / "raw"
    manifest = build_corpus(SMALL, out, progress=False)
    return out, manifest


def load(path):
    return read_records(path)[0]


def test_categories_languages_and_records(small_corpus):
    out, manifest = small_corpus
    cats = manifest["categories"]
    assert set(cats) == set(SMALL["categories"])
    assert sum(c["lang"] == "zh" for c in cats.values()) >= 3
    assert sum(c["lang"] == "en" for c in cats.values()) >= 2
    for name, entry in cats.items():
        recs = load(out / f"{name}.jsonl")  # validates the pretraining schema, raises on any bad line
        cfg = SMALL["categories"][name]
        assert len(recs) == entry["records"] > 0
        assert all(r["category"] == name and r["source"] == "" for r in recs)
        chars = sum(len(r["target"]) for r in recs)
        assert chars == entry["chars"] <= cfg["max_chars"]
        assert chars > cfg["max_chars"] * 0.8  # the cap is filled, not just respected
        assert min(len(r["target"]) for r in recs) >= cfg["min_chars"]
        assert entry["candidates"] == entry["records"] + sum(entry["dropped"].values())
        text = "".join(r["target"] for r in recs)
        assert "\r" not in text and "\ufffd" not in text
        if entry["lang"] == "zh":
            assert han_ratio(text) > 0.6, name
        else:
            assert han_ratio(text) == 0 and sum(ch.isascii() for ch in text) / len(text) > 0.99, name
        origin = entry["origin"]
        assert re.fullmatch(r"[0-9a-f]{64}", origin["sha256"]) and origin["members"]
    assert (out / "provenance.json").is_file()
    assert manifest["zh_chars"] == sum(c["chars"] for c in cats.values() if c["lang"] == "zh")


def test_zh_news_has_no_pos_tag_residue(small_corpus):
    out, _ = small_corpus
    text = "\n".join(r["target"] for r in load(out / "zh_news.jsonl"))
    assert not re.search(r"/[A-Za-z]{1,4}\b", text)
    assert not re.search(r"\][a-z]{1,3}", text)
    assert "  " not in text
    assert "。" in text and han_ratio(text) > 0.8


def test_untag_line():
    line = "[中央/n  人民/n  广播/vn  电台/n]nt  和/c  Windows/x  NT/x  １９９８年/t  ，/w"
    assert untag_line(line) == "中央人民广播电台和Windows NT１９９８年，"
    assert untag_line("叹/Vg 身陷囹圄/i") == "叹身陷囹圄"


def test_shakespeare_markdown_is_plain_text(small_corpus):
    out, _ = small_corpus
    recs = load(out / "en_shakespeare.jsonl")
    text = "\n".join(r["target"] for r in recs)
    assert "**" not in text and "_" not in text and "\\" not in text
    assert not re.search(r"^#", text, flags=re.M)
    assert all(re.search(r"\b(SCENE|PROLOGUE|EPILOGUE|ACT|INDUCTION)\b", r["target"].split("\n", 1)[0], re.I)
               for r in recs)
    assert markdown_play_to_text("_Enter A,\nB and C_\n\n**A**  \nSay \\[aside\\] it\\--now  \n") == \
        "[Enter A, B and C]\n\nA\nSay [aside] it--now"


def test_novel_paragraphs_and_gutenberg_boilerplate():
    lines = ["header", "*** START OF THIS PROJECT GUTENBERG EBOOK X ***", "CHAPTER I",
             "A long line that wraps because it is part of a paragraph that goes",
             "on.", "Short one.", "*** END OF THIS PROJECT GUTENBERG EBOOK X ***", "license"]
    docs = list(gutenberg_novel({"x.txt": "\n".join(lines).encode()}, {"chunk_chars": 10}))
    assert [d.text for d in docs] == [
        "CHAPTER I\nA long line that wraps because it is part of a paragraph that goes on.", "Short one."]


def test_build_is_deterministic(small_corpus, tmp_path):
    out, _ = small_corpus
    build_corpus(SMALL, tmp_path / "again", progress=False)
    for f in sorted(out.glob("*.jsonl")) + [out / "manifest.json"]:
        assert (tmp_path / "again" / f.name).read_bytes() == f.read_bytes(), f.name


def test_seed_changes_selection_not_format(tmp_path):
    one = {"seed": 1, "categories": {"zh_review": {**DEFAULT_CATEGORIES["zh_review"], "max_chars": 5000}}}
    two = {"seed": 2, "categories": one["categories"]}
    build_corpus(one, tmp_path / "a", progress=False)
    build_corpus(two, tmp_path / "b", progress=False)
    a, b = load(tmp_path / "a" / "zh_review.jsonl"), load(tmp_path / "b" / "zh_review.jsonl")
    assert a and b and a != b


def test_user_jsonl_category(tmp_path):
    good = {"source": "", "target": "A user document long enough to keep.", "category": "x"}
    write_jsonl(tmp_path / "user" / "a.jsonl", [good, {"source": "", "target": "short"}])
    (tmp_path / "user" / "b.jsonl").write_bytes(b'{"source": "", "target": "ok ok ok ok ok ok"\n' +
                                                json.dumps(good).encode() + b"\n")
    cfg = {"categories": {"mine": {"lang": "en", "paths": [str(tmp_path / "user")], "min_chars": 10}}}
    with pytest.raises(RecordError) as info:
        build_corpus(cfg, tmp_path / "out", progress=False)
    assert f"{tmp_path / 'user' / 'b.jsonl'}:1" in str(info.value)
    cfg["categories"]["mine"]["on_bad_record"] = "skip"
    m = build_corpus(cfg, tmp_path / "out", progress=False)["categories"]["mine"]
    assert m["validation"]["skipped"] == {"invalid_json": 1}
    assert m["records"] == 2 and m["dropped"] == {"below_min_chars": 1}
    assert m["origin"]["category_relabelled"] == 2  # "x" -> "mine"; the missing one was filled with "mine"
    assert {r["category"] for r in load(tmp_path / "out" / "mine.jsonl")} == {"mine"}


@pytest.mark.parametrize("cats,key", [
    ({"a": {"lang": "fr", "builder": "idioms"}}, "corpus.categories.a.lang"),
    ({"a": {"lang": "zh", "builder": "nope"}}, "corpus.categories.a.builder"),
    ({"a": {"lang": "zh", "builder": "idioms", "max_char": 5}}, "corpus.categories.a"),
    ({"a": {"lang": "zh", "builder": "idioms", "min_chars": -1}}, "corpus.categories.a.min_chars"),
    ({"a": {"lang": "en", "paths": []}}, "corpus.categories.a.paths"),
    ({"a": {"lang": "en", "paths": ["x"], "on_bad_record": "ignore"}}, "corpus.categories.a.on_bad_record"),
])
def test_config_errors_name_the_key(cats, key):
    with pytest.raises(ConfigError, match=re.escape(key)):
        normalize_section({"categories": cats})


# ---------------------------------------------------------------------------------------------------- split

def _records(n, prefix="doc"):
    return [{"source": "", "target": f"{prefix} {i} " + "x" * (i % 7), "category": "c"} for i in range(n)]


def test_split_deterministic_disjoint_balanced(small_corpus, tmp_path):
    raw, _ = small_corpus
    section = {"heldout_fraction": 0.1, "max_heldout": 1000, "seed": 3}
    m1 = split_corpus(raw, tmp_path / "s1", section, progress=False)
    split_corpus(raw, tmp_path / "s2", section, progress=False)
    for part in ("train", "heldout"):
        for f in sorted((tmp_path / "s1" / part).glob("*.jsonl")) + [tmp_path / "s1" / part / "manifest.json"]:
            assert (tmp_path / "s2" / part / f.name).read_bytes() == f.read_bytes()
    for cat, entry in m1["categories"].items():
        src = load(raw / f"{cat}.jsonl")
        train, held = load(tmp_path / "s1" / "train" / f"{cat}.jsonl"), \
            read_records(tmp_path / "s1" / "heldout" / f"{cat}.jsonl", on_error="skip")[0]
        key = lambda r: r["source"] + "\x00" + r["target"]  # noqa: E731
        assert not {key(r) for r in train} & {key(r) for r in held}
        assert Counter(map(key, train)) + Counter(map(key, held)) == Counter(map(key, src))
        assert entry["records"] == entry["train_records"] + entry["heldout_records"] == len(src)
        assert entry["lang"] == SMALL["categories"][cat]["lang"]
        # source order is kept on both sides: each side is a subsequence of the input
        for side in (train, held):
            it = iter(map(key, src))
            assert all(any(k == s for s in it) for k in map(key, side))
    total = sum(e["records"] for e in m1["categories"].values())
    held_total = sum(e["heldout_records"] for e in m1["categories"].values())
    assert 0.05 * total < held_total < 0.15 * total
    assert (tmp_path / "s1" / "heldout" / "provenance.json").is_file()


def test_split_stable_when_records_are_added(tmp_path):
    base = _records(2000)
    write_jsonl(tmp_path / "a" / "c.jsonl", base)
    write_jsonl(tmp_path / "b" / "c.jsonl", base[:1000] + _records(50, "new") + base[1000:])
    sec = {"heldout_fraction": 0.05, "max_heldout": None, "seed": 1}
    split_corpus(tmp_path / "a", tmp_path / "sa", sec, progress=False)
    split_corpus(tmp_path / "b", tmp_path / "sb", sec, progress=False)
    held_a = load(tmp_path / "sa" / "heldout" / "c.jsonl")
    held_b = load(tmp_path / "sb" / "heldout" / "c.jsonl")
    old_b = [r for r in held_b if not r["target"].startswith("new")]
    assert old_b == held_a and 50 < len(held_a) < 150


def test_heldout_mask_cap_and_fraction():
    texts = [f"t{i}" for i in range(5000)]
    m = heldout_mask(texts, 0.1, None, 0)
    assert 400 < sum(m) < 600
    capped = heldout_mask(texts, 0.1, 20, 0)
    assert sum(capped) == 20 and all(m[i] for i, c in enumerate(capped) if c)
    assert heldout_mask(texts, 0.0, None, 0) == [False] * 5000
    assert heldout_mask(["same", "same", "other"] * 300, 0.5, None, 0)[:2] in ([True, True], [False, False])


def test_split_accepts_cleaned_dir_without_manifest(tmp_path):
    write_jsonl(tmp_path / "clean" / "c.jsonl", _records(100))
    m = split_corpus(tmp_path / "clean", tmp_path / "s", {"heldout_fraction": 0.2}, langs={"c": "en"},
                     progress=False)
    assert m["categories"]["c"]["lang"] == "en" and m["categories"]["c"]["records"] == 100
    with pytest.raises(ConfigError, match="heldout_fraction"):
        split_corpus(tmp_path / "clean", tmp_path / "s", {"heldout_fraction": 1.5}, progress=False)


# ---------------------------------------------------------------------------------------------------- SFT

def test_idiom_sft(tmp_path):
    sec = {"max_records": 400, "heldout_fraction": 0.1, "max_heldout": 1000, "seed": 5}
    m = build_idiom_sft(sec, tmp_path / "a")
    build_idiom_sft(sec, tmp_path / "b")
    for name in ("train.jsonl", "heldout.jsonl", "manifest.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    train = read_records(tmp_path / "a" / "train.jsonl", schema="sft")[0]
    held = read_records(tmp_path / "a" / "heldout.jsonl", schema="sft")[0]
    assert len(train) + len(held) == m["records"] == 400
    assert 15 < len(held) < 70
    word = lambda c: re.search(r"“(.+?)”", c["messages"][0]["content"]).group(1)  # noqa: E731
    assert not {word(c) for c in train} & {word(c) for c in held}
    for conv in train + held:
        w = word(conv)
        assert conv["category"] == "zh_idiom_sft" and len(conv["messages"]) in (2, 4)
        assert conv["messages"][1]["content"].startswith(f"“{w}”") and "意思是" in conv["messages"][1]["content"]
        if len(conv["messages"]) == 4:
            assert conv["messages"][3]["content"].startswith("例如：") and "～" not in conv["messages"][3]["content"]
    with_example = [c for c in train if len(c["messages"]) == 4]
    assert len(with_example) > len(train) // 3
    # the example sentences quote the idiom (the dictionary's ～ is filled in); a few paraphrase it
    assert sum(word(c) in c["messages"][3]["content"] for c in with_example) > 0.8 * len(with_example)


# ---------------------------------------------------------------------------------------------------- CLI

def test_cli_build_and_split(tmp_path, repo_root):
    cfg = {"experiment": "t", "corpus": {"seed": 1, "categories": {
        "zh_idiom": {"lang": "zh", "builder": "idioms", "max_chars": 3000, "min_chars": 20},
        "en_novel": {"lang": "en", "builder": "gutenberg_novel", "max_chars": 20000}},
        "split": {"heldout_fraction": 0.2, "max_heldout": 5, "seed": 2},
        "sft": {"max_records": 50}}}
    demo = yaml.safe_load((repo_root / "config" / "config.yaml").read_text(encoding="utf-8"))
    cfg = {**demo, **cfg}  # an experiment config: the demo's other sections
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    runner = CliRunner()
    res = runner.invoke(cli_build_corpus, ["--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "raw"),
                                           "--sft-out", str(tmp_path / "sft"), "--quiet"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "raw").glob("*.jsonl")) == ["en_novel.jsonl", "zh_idiom.jsonl"]
    assert json.loads((tmp_path / "sft" / "manifest.json").read_text())["records"] == 50
    res = runner.invoke(cli_split_corpus, ["--in", str(tmp_path / "raw"), "--out", str(tmp_path),
                                           "--config", str(tmp_path / "c.yaml"), "--quiet"])
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "train" / "manifest.json").read_text())
    assert m["max_heldout"] == 5 and all(c["heldout_records"] <= 5 for c in m["categories"].values())
    assert m["categories"]["zh_idiom"]["lang"] == "zh"


def test_min_heldout_floor_for_small_categories():
    texts = [f"t{i}" for i in range(30)]
    m = heldout_mask(texts, 0.02, 200, 1, min_heldout=5)
    assert sum(m) == 5
    assert sum(heldout_mask(texts[:3], 0.0, 200, 1, min_heldout=5)) == 2  # never the whole category
    big = heldout_mask([f"t{i}" for i in range(5000)], 0.1, None, 1, min_heldout=5)
    assert big == heldout_mask([f"t{i}" for i in range(5000)], 0.1, None, 1)


def test_schema_is_the_only_source_of_corpus_defaults(repo_root):
    from cpt.corpus.builders import BUILDERS

    schema = yaml.safe_load((repo_root / "workflow" / "schemas" / "corpus.schema.yaml").read_text(encoding="utf-8"))
    assert set(schema["properties"]["categories"]["additionalProperties"]["properties"]["builder"]["enum"]) == \
        set(BUILDERS)
    sec = normalize_section(None)  # no corpus section: the schema's demo categories
    assert set(sec["categories"]) == set(schema["properties"]["categories"]["default"])
    assert sec["categories"]["zh_news"]["kind"] == "builtin" and sec["split"]["heldout_fraction"] == 0.02
    config = yaml.safe_load((repo_root / "config" / "config.yaml").read_text(encoding="utf-8"))
    assert config["corpus"]["categories"] == schema["properties"]["categories"]["default"]
