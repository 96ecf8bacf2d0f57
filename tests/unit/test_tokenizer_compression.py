"""Step 1.7: compression table arithmetic, files, acceptance; and the CLI commands end to end (small sizes)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from tokenizer_fixtures import base_tokenizer_dir, zh_text_files

from cpt.core.errors import TokenizerError
from cpt.tokenizer import spm
from cpt.tokenizer.compression import compression_report, compression_table, measure, to_markdown
from cpt.tokenizer.spm_extend import append_pieces


def test_measure_arithmetic():
    sp = spm.processor(base_tokenizer_dir() / "tokenizer.model")
    texts = ["Hello world", "中国人民", "a"]
    ids = sp.encode(texts, out_type=int)
    m = measure(lambda xs: sp.encode(list(xs), out_type=int), texts)
    tokens = sum(map(len, ids))
    assert m == {"samples": 3, "characters": 11 + 4 + 1, "tokens": tokens,
                 "tokens_per_char": round(tokens / 16, 4), "avg_tokens_per_sample": round(tokens / 3, 3)}
    assert measure(lambda xs: [], [])["tokens_per_char"] is None


def test_table_ratios_and_markdown():
    base = spm.load_proto(base_tokenizer_dir() / "tokenizer.model")
    ext = append_pieces(base, ["中国", "人民", "中国人民"])
    table = compression_table({"base": spm.processor(base), "extended": spm.processor(ext)},
                              {"zh": ["中国人民很好", "人民"], "en": ["Hello world"]})
    rows = {(r["tokenizer"], r["language"]): r for r in table["rows"]}
    assert rows["extended", "zh"]["vocab_size"] == 32003
    assert table["ratios"]["zh"]["extended"] == round(rows["extended", "zh"]["tokens"] / rows["base", "zh"]["tokens"], 4)
    assert table["ratios"]["zh"]["extended"] < 1 and table["ratios"]["en"]["extended"] == 1.0
    md = to_markdown(table)
    assert "| extended | zh | 32,003 |" in md and "tokens/char" in md


def test_report_files_and_acceptance(tmp_path):
    base_dir = base_tokenizer_dir()
    _, held, en = zh_text_files()
    base = spm.load_proto(base_dir / "tokenizer.model")
    from cpt.tokenizer.hf import save_hf_tokenizer

    save_hf_tokenizer(append_pieces(base, ["中国", "人民"]), tmp_path / "ext")
    out = tmp_path / "tok" / "compression.json"
    with pytest.raises(TokenizerError, match="max_zh_ratio"):  # two pieces do not halve Chinese token counts
        compression_report({}, base_dir, tmp_path / "ext", [held], [en], out)
    table = json.loads(out.read_text())  # written before the verdict
    assert table["acceptance"]["passed"] is False and 0.9 < table["ratios"]["zh"]["extended"] < 1
    table = compression_report({"compression": {"max_zh_ratio": None}}, base_dir, tmp_path / "ext", [held], [en], out)
    assert table["acceptance"]["passed"]
    assert out.with_suffix(".md").is_file() and (out.parent / "compression.provenance.json").is_file()
    zh = next(r for r in table["rows"] if r["tokenizer"] == "base" and r["language"] == "zh")
    assert zh["tokens_per_char"] > 1.3  # LLaMA-2 needs about 1.5 tokens per character of People's Daily


def test_cli_end_to_end(tmp_path):
    from cpt.cli import cli

    train, held, en = zh_text_files()
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(json.dumps({"tokenizer": {
        "vocab_size": 32300,
        "candidates": {"sources": [{"kind": "train", "vocab_size": 3000, "character_coverage": 0.98}]},
        "expansion": {"english_lines": 1000, "agreement_lines": 50},
        "compression": {"max_zh_ratio": 0.95}}}), encoding="utf-8")
    r = CliRunner()
    tok = tmp_path / "tok"
    res = r.invoke(cli, ["base-tokenizer", "--config", str(cfg), "--local", str(base_tokenizer_dir()),
                         "--out", str(tok / "base")], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    res = r.invoke(cli, ["select-pieces", "--config", str(cfg), "--base", str(tok / "base"), "--train", str(train),
                         "--out", str(tok)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    res = r.invoke(cli, ["extend-tokenizer", "--config", str(cfg), "--base", str(tok / "base"),
                         "--pieces", str(tok / "pieces.jsonl"), "--candidates", str(tok / "candidates.jsonl"),
                         "--zh", str(held), "--out", str(tok / "extended")], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["vocab_size"] == 32300
    res = r.invoke(cli, ["compression", "--config", str(cfg), "--base", str(tok / "base"), "--extended",
                         str(tok / "extended"), "--zh", str(held), "--en", str(en), "--out",
                         str(tok / "compression.json")], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "| extended | zh | 32,300 |" in res.output


@pytest.mark.parametrize("given, in_config, want", [(None, {"seed": 77}, 77), (5, {"seed": 77}, 5), (None, {}, None)])
def test_select_pieces_takes_the_seed_from_the_config_unless_given(tmp_path, monkeypatch, given, in_config, want):
    from cpt.cli import cli
    from cpt.core.schema import default
    from cpt.tokenizer import pieces

    seen = {}
    monkeypatch.setattr(pieces, "select_pieces", lambda section, *a, seed: seen.update(seed=seed) or {})
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"tokenizer": {"vocab_size": 32300, **in_config}}), encoding="utf-8")
    base = tmp_path / "base"
    base.mkdir()
    args = ["select-pieces", "--config", str(cfg), "--base", str(base), "--out", str(tmp_path / "o")]
    res = CliRunner().invoke(cli, args + (["--seed", str(given)] if given is not None else []), catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert seen["seed"] == (default("tokenizer.seed") if want is None else want)

