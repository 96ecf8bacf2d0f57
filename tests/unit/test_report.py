"""cpt.report.build on a synthetic results/<exp> tree: every output written, numbers carried, missing inputs listed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cpt.core.errors import RecordError
from cpt.report import build as report
from cpt.report import cli as report_cli


def _write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")


def make_results(root: Path, with_sft: bool = False) -> None:
    _write(root / "tokenizer" / "compression.json", {
        "baseline": "base",
        "rows": [
            {"tokenizer": "base", "language": "zh", "vocab_size": 32000, "samples": 10, "characters": 1000,
             "tokens": 1205, "tokens_per_char": 1.205, "avg_tokens_per_sample": 120.5},
            {"tokenizer": "extended", "language": "zh", "vocab_size": 69104, "samples": 10, "characters": 1000,
             "tokens": 650, "tokens_per_char": 0.65, "avg_tokens_per_sample": 65.0}],
        "ratios": {"zh": {"extended": 0.539}},
        "reference_published": {"base_tokens_per_char": 1.205, "extended_tokens_per_char": 0.659,
                                "base_avg_tokens": 134.689, "extended_avg_tokens": 73.682}})
    stages = ["base", "injection", "replay"] + (["sft"] if with_sft else [])
    for k, s in enumerate(stages):
        d = root / "train" / s
        d.mkdir(parents=True, exist_ok=True)
        with open(d / "metrics.jsonl", "w") as f:
            for step in range(1, 6):
                f.write(json.dumps({"step": step, "tokens": step * 1024, "loss": 9.0 - k - step * 0.1, "lr": 1e-3,
                                    "grad_norm": 1.0, "tokens_per_s": 500.0}) + "\n")
        sel = {"en_novel": {"documents_selected": 4 + k, "tokens_selected": 1000 * (k + 1), "replay_documents": 0,
                            "replay_tokens": 0},
               "zh_news": {"documents_selected": 10, "tokens_selected": 3000, "replay_documents": k,
                           "replay_tokens": 500 * k}}
        _write(root / "dataset" / s / "manifest.json", {
            "buckets": ["bucket-00000"], "num_sequences": 10, "num_tokens": 5120, "max_length": 512,
            "tokenizer": "x", "vocab_size": 32000 if s == "base" else 69104, "padding_fraction": 0.0125, "documents": {"skipped": {"overlong": k}},
            "selection": {"categories": sel}})
    for k, p in enumerate(["base_model", "init"] + stages):
        _write(root / "evaluate" / p / "benchmarks.json", {
            "mmlu": {"accuracy": 25.0 + k, "correct": 1, "num_questions": 4, "shots": 5},
            "idioms": {"accuracy": 24.0 + 2 * k, "correct": 1, "num_questions": 4, "shots": 5}})
        _write(root / "evaluate" / p / "protocol.json", {"published": "colossal-llama-2-7b", "backend": "cpt"})
        _write(root / "evaluate" / p / "bpb.json", {"languages": {
            "zh": {"bits_per_byte": 3.0 - 0.3 * k, "perplexity": 100.0, "tokens": 10, "bytes": 30},
            "en": {"bits_per_byte": 2.0 + 0.05 * k, "perplexity": 50.0, "tokens": 10, "bytes": 30}}})
    _write(root / "corpus" / "raw" / "manifest.json", {"seed": 1, "categories": {
        "zh_news": {"lang": "zh", "records": 120, "chars": 54321, "bytes": 160000, "dropped": {}},
        "en_novel": {"lang": "en", "records": 80, "chars": 20000, "bytes": 20000, "dropped": {}}}})
    _write(root / "clean" / "report.json", {"categories": {
        "zh_news": {"language": "zh", "input": 120, "kept": 100, "chars_in": 54321, "chars_kept": 50000},
        "en_novel": {"language": "en", "input": 80, "kept": 80, "chars_in": 20000, "chars_kept": 20000}}})
    split = {"categories": {
        "zh_news": {"lang": "zh", "records": 100, "train_records": 90, "heldout_records": 10, "train_chars": 45000,
                    "heldout_chars": 5000},
        "en_novel": {"lang": "en", "records": 80, "train_records": 72, "heldout_records": 8, "train_chars": 18000,
                     "heldout_chars": 2000}}}
    _write(root / "corpus" / "train" / "manifest.json", split)
    _write(root / "corpus" / "heldout" / "manifest.json", split)


def test_report_full(tmp_path):
    root = tmp_path / "results" / "demo"
    make_results(root)
    out = tmp_path / "rep"
    points = ["base_model", "init", "base", "injection", "replay"]
    data = report.build_report(root, out, stages=["base", "injection", "replay"], points=points)
    for name in report.OUTPUTS:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "bpb.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert data["missing"] == []
    summary = (out / "summary.md").read_text()
    assert "| base | zh | 32,000 | 10 | 1.205 | 120.500 |" in summary
    assert "| replay | 29.00 | 32.00 |" in summary  # mmlu then idioms columns, k = 4
    assert "| Colossal-LLaMA-2-7b-base (published) | 53.06 | n/a |" in summary  # idioms: not a published column
    assert "| Llama-2-7B (published) | 44.47 | n/a |" in summary
    assert "final loss 8.5000 at step 5, 5,120 tokens" in summary
    # the Data section: per-category numbers, no elided values
    assert "…" not in summary
    assert "| zh_news | zh | 120 | 54,321 | 100 | 50,000 | 90 | 45,000 | 10 | 5,000 |" in summary
    assert "| total |  | 200 | 74,321 | 180 | 70,000 | 162 | 63,000 | 18 | 7,000 |" in summary
    # replay (k = 2): en 3,000 tokens, zh 3,000 + 1,000 replayed -> 7,000 in all
    assert "| replay | en_novel | 6 | 3,000 | 0 | 42.9% |" in summary
    assert "| replay | zh_news | 12 | 4,000 | 1,000 | 57.1% |" in summary
    assert "| replay | total | 18 | 7,000 | 1,000 | 100.0% |" in summary
    assert "| injection | 10 | 5,120 | 512 | 1 | 1.25% | overlong 1 |" in summary
    data_html = (out / "datasets.html").read_text()
    assert "Tokens per stage by category" in data_html and "57.1%" in data_html and "54,321" in data_html
    # the vocabulary change is marked: two loss segments, one marker at the end of `base`
    rep = json.loads((out / "report.json").read_text())
    segs = rep["loss_segments"]["tokens"]
    assert [(g["vocab"], g["stages"]) for g in segs["segments"]] == [(32000, ["base"]),
                                                                      (69104, ["injection", "replay"])]
    assert [(m["x"], m["from"], m["to"]) for m in segs["vocabulary_changes"]] == [(5 * 1024.0, 32000, 69104)]
    assert rep["loss_segments"]["step"]["vocabulary_changes"][0]["x"] == 5.0
    assert "at 5,120 tokens the vocabulary 32,000 -> 69,104: losses before and after are not comparable" in summary
    assert "final loss 7.5000 at step 5, 5,120 tokens (vocabulary 69,104)" in summary
    bench_html = (out / "benchmarks.html").read_text()
    assert "44.47" in bench_html and "injection" in bench_html
    rep = json.loads((out / "report.json").read_text())
    assert rep["bpb"]["replay"]["zh"]["bits_per_byte"] == 3.0 - 0.3 * 4
    # same inputs -> same bytes (plots and tables)
    out2 = tmp_path / "rep2"
    report.build_report(root, out2, stages=["base", "injection", "replay"], points=points)
    for name in ("bpb.png", "loss_by_step.png", "summary.md", "benchmarks.html"):
        assert (out / name).read_bytes() == (out2 / name).read_bytes(), name


def test_report_tolerates_missing_inputs(tmp_path):
    root = tmp_path / "results" / "demo"
    make_results(root)
    (root / "tokenizer" / "compression.json").unlink()
    runner = CliRunner()
    r = runner.invoke(report_cli.cli_report, ["--results", str(root), "--stage", "base", "--stage", "injection",
                                          "--stage", "replay", "--stage", "sft", "--point", "replay", "--point",
                                          "sft"])
    assert r.exit_code == 0, r.output + repr(r.exception)
    summary = (root / "report" / "summary.md").read_text()
    assert "## Not available" in summary
    assert "train/sft/metrics.jsonl (no loss curve for stage sft)" in summary
    assert "evaluate/sft/benchmarks.json" in summary
    assert "tokenizer/compression.json" in summary
    assert (root / "report" / "bpb.png").is_file()


def test_report_empty_results(tmp_path):
    root = tmp_path / "empty"
    root.mkdir()
    data = report.build_report(root, tmp_path / "out")
    assert (tmp_path / "out" / "summary.md").is_file()
    assert any("compression" in m for m in data["missing"])


def test_read_metrics_keeps_loss_rows_and_names_bad_line(tmp_path):
    p = tmp_path / "metrics.jsonl"
    p.write_text('{"step": 1, "loss": 2.5}\n\n{"event": "saved"}\n{"step": 2, "loss": 2.0}\n', encoding="utf-8")
    assert [r["step"] for r in report.read_metrics(p)] == [1, 2]
    p.write_text('{"step": 1, "loss": 2.5}\n{"step": 2, "lo\n', encoding="utf-8")
    with pytest.raises(RecordError, match=r"metrics\.jsonl:2: invalid_json") as e:
        report.read_metrics(p)
    assert e.value.reason == "invalid_json"


def test_loss_layout_segments_and_bpb_positions():
    from cpt.report.plots import bpb_positions, loss_layout

    rows = [{"step": i, "tokens": 100 * i, "loss": 5.0 - 0.1 * i} for i in (1, 2, 3)]
    train = {"base": rows, "injection": rows, "replay": rows, "sft": rows[:2]}
    lay = loss_layout(train, {"base": 32000, "injection": 69104, "replay": None, "sft": 69104}, "tokens")
    # stages end to end: injection starts where base stopped
    assert lay["series"]["injection"]["x"] == [400.0, 500.0, 600.0]
    assert lay["ends"] == {"base": 300.0, "injection": 600.0, "replay": 900.0, "sft": 1100.0}
    # unknown vocabulary (None) stays in the current segment; one change, at 300 tokens
    assert [(g["vocab"], g["stages"], g["x0"], g["x1"]) for g in lay["segments"]] == [
        (32000, ["base"], 0.0, 300.0), (69104, ["injection", "replay", "sft"], 300.0, 1100.0)]
    assert [(m["x"], m["from"], m["to"]) for m in lay["markers"]] == [(300.0, 32000, 69104)]
    pos = bpb_positions(["base_model", "init", "base", "replay", "elsewhere"], lay)
    assert pos == {"base_model": 0.0, "init": 300.0, "base": 300.0, "replay": 900.0}
    same = loss_layout({"a": rows, "b": rows}, {"a": 32000, "b": 32000}, "step")
    assert len(same["segments"]) == 1 and same["markers"] == []
    assert bpb_positions(["init"], same) == {}


def _metrics(path: Path, rates, tokens_per_step: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for i, r in enumerate(rates, 1):
            f.write(json.dumps({"step": i, "tokens": i * tokens_per_step, "loss": 5.0, "tokens_per_s": r}) + "\n")


def test_cost_per_stage_total_and_projection(tmp_path):
    root = tmp_path / "results" / "x"
    # stage a: 2 devices, median of the rates after the warm-up row = 400 tokens/s -> 200 per device;
    # 720,000 tokens -> 720,000 / 200 / 3600 = 1.0 device-hour, 0.5 wall hours, $2.50 at $2.50/h
    _metrics(root / "train" / "a" / "metrics.jsonl", [1.0, 300.0, 400.0, 500.0], 180_000)
    _write(root / "train" / "a" / "run.json", {"key": "k", "trainer": {"world_size": 2}})
    # stage b: one device at 100 tokens/s; 1,080,000 tokens -> 3.0 device-hours, $7.50
    _metrics(root / "train" / "b" / "metrics.jsonl", [100.0, 100.0], 540_000)
    _write(root / "train" / "b" / "run.json", {"trainer": {"world_size": 1}})
    # stage c: no run.json -> no world size -> no measured rate (listed, not guessed)
    _metrics(root / "train" / "c" / "metrics.jsonl", [100.0], 10)
    section = {"cost": {"gpu_hour_usd": 2.5, "projection": {"tokens": 8.5e9, "published": "8.5 B tokens, 64 A800"}}}
    data = report.build_report(root, tmp_path / "rep", stages=["a", "b", "c"], points=[], section=section, devices=64)
    c = data["cost"]
    a, b, cc = c["stages"]
    assert (a["tokens_per_s_per_device"], a["devices"], a["device_hours"], a["wall_hours"], a["cost_usd"]) == \
        (200.0, 2, 1.0, 0.5, 2.5)
    assert (b["device_hours"], b["cost_usd"]) == (3.0, 7.5)
    assert "device_hours" not in cc and cc["rate_source"].startswith("unknown")
    assert c["total"] == {"tokens": 720_000 + 1_080_000 + 10, "device_hours": 4.0, "cost_usd": 10.0,
                          "stages_without_rate": ["c"]}
    # the projection at the mean measured rate (150 tokens/s/device) on the 64 devices given
    p = c["projection"]
    assert p["tokens_per_s_per_device"] == 150.0 and p["devices"] == 64
    assert p["device_hours"] == 8.5e9 / 150.0 / 3600.0 and p["cost_usd"] == p["device_hours"] * 2.5
    summary = (tmp_path / "rep" / "summary.md").read_text()
    assert "| a | 720,000 | 2 | 200 | measured | 1.000 | 0.500 | $2.50 |" in summary
    assert "| whole run | 1,800,010 |  |  |  | 4.000 |  | $10.00 |" in summary
    assert "| published |  |  |  | 8.5 B tokens, 64 A800 |" in summary
    assert "Run cost" in (tmp_path / "rep" / "cost.html").read_text()
    # --assume-tokens-per-s fills the stage without a measurement (measured ones keep theirs), and the projection
    runner = CliRunner()
    r = runner.invoke(report_cli.cli_report, ["--results", str(root), "--stage", "a", "--stage", "b", "--stage", "c",
                                          "--assume-tokens-per-s", "1000", "--gpu-hour-usd", "1"])
    assert r.exit_code == 0, r.output + repr(r.exception)
    rep = json.loads((root / "report" / "report.json").read_text())
    assert [s["rate_source"] for s in rep["cost"]["stages"]] == ["measured", "measured", "assumed"]
    assert rep["cost"]["stages"][2]["device_hours"] == 10 / 1000 / 3600
    assert rep["cost"]["total"]["cost_usd"] == 4.0 + 10 / 1000 / 3600


def test_cost_projection_of_the_locked_7b_config():
    """The locked 7B config projects its published run: 64 devices from resources.train, its assumed rate."""
    from cpt.core.resources import train_devices
    from cpt.report import cost
    from cpt.workflow.experiment import load

    cfg = load(Path(__file__).resolve().parents[2] / "config" / "colossal-llama-2-7b.yaml")
    sec = cfg["report"]["cost"]
    devices = train_devices(cfg["resources"])
    assert devices == 64
    c = cost.run_cost({}, {}, sec, devices)
    p = c["projection"]
    assert p["tokens"] == 8.5e9 and p["devices"] == 64 and p["rate_source"].startswith("assumed")
    rate = sec["assume_tokens_per_s"]
    assert p["wall_hours"] == 8.5e9 / rate / 3600 / 64
    assert p["cost_usd"] == 8.5e9 / rate / 3600 * sec["gpu_hour_usd"]
    assert "15 h" in p["published"] and "1,000" in p["published"]


def test_report_benchmark_tables_show_distribution_baseline_and_marks(tmp_path):
    root = tmp_path / "results" / "demo"
    make_results(root)
    dist = {"predicted": {"A": 96, "B": 2, "C": 1, "D": 1}, "gold": {"A": 25, "B": 30, "C": 25, "D": 20}}
    _write(root / "evaluate" / "replay" / "benchmarks.json", {
        "mmlu": {"accuracy": 25.0, "correct": 25, "num_questions": 100, "shots": 5, "answer_distribution": dist,
                 "majority_baseline": 30.0, "top_letter_share": 0.96, "degenerate": True},
        "mmlu_full": {"status": "skipped", "skip_reason": "probe 'mmlu' is degenerate", "accuracy": None,
                      "num_questions": 0}})
    report.build_report(root, tmp_path / "rep", stages=["base", "injection", "replay"],
                        points=["init", "replay"])
    summary = (tmp_path / "rep" / "summary.md").read_text()
    assert "| replay | 25.00 (degenerate) | - | skipped |" in summary  # mmlu, idioms (absent), mmlu_full
    assert "| replay | mmlu | 25.00 | 30.00 | A 96% B 2% C 1% D 1% | A 25% B 30% C 25% D 20% | degenerate |" in summary
    assert "| replay | mmlu_full | - | - | - | - | skipped: probe 'mmlu' is degenerate |" in summary
    assert "| init | mmlu | 26.00 | - | - | - |  |" in summary  # an old result without a distribution
    html_text = (tmp_path / "rep" / "benchmarks.html").read_text()
    assert "Answer-letter distributions" in html_text and "A 96% B 2% C 1% D 1%" in html_text


def test_report_shows_bpb_against_the_base_and_every_points_generations(tmp_path):
    root = tmp_path / "results" / "demo"
    make_results(root)
    points = ["base_model", "init", "base", "injection", "replay"]
    for k, p in enumerate(points[:2] + points[-1:]):
        recs = [{"index": 0, "lang": "en", "prompt": "The capital of France is", "form": "plain",
                 "prompt_tokens": 6, "output": f" Paris{k}.\n\n  Next"},
                {"index": 1, "lang": "zh", "prompt": "中国的首都是", "form": "plain", "prompt_tokens": 4,
                 "output": "\n\n" if k == 0 else "北京。"}]
        f = root / "generations" / p / "generations.jsonl"
        f.parent.mkdir(parents=True)
        f.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs), encoding="utf-8")
    out = tmp_path / "rep"
    report.build_report(root, out, stages=["base", "injection", "replay"], points=points)
    summary = (out / "summary.md").read_text(encoding="utf-8")
    # make_results: en 2.0 + 0.05 k, zh 3.0 - 0.3 k; replay is k = 4
    assert "| model | en vs base_model | zh vs base_model |" in summary
    assert "| replay | +10.0% | -40.0% |" in summary and "| init | +2.5% | -10.0% |" in summary
    assert "**en** (plain): `The capital of France is`" in summary
    assert "- replay: Paris2. Next" in summary and "- base_model: _(only whitespace)_" in summary
    gens = summary[summary.index("## Generations"):]
    assert "- injection:" not in gens  # no generations there: no line
    rep = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert rep["bpb_vs_first_point"]["replay"] == {"en vs base_model": "+10.0%", "zh vs base_model": "-40.0%"}
    assert rep["generations"]["init"][1]["output"] == "北京。"


def test_report_compares_the_init_methods_of_model_init(tmp_path):
    root = tmp_path / "results" / "demo"
    make_results(root)
    _write(root / "model" / "init" / "report.json", {
        "method": "subword_mean",
        "loss": {"en": {"before": {"bits_per_byte": 1.3962}}, "zh": {"before": {"bits_per_byte": 3.3399}}},
        "comparison": [
            {"method": "subword_mean", "en_bits_per_byte": 1.396521, "zh_bits_per_byte": 3.99828, "en_kl_nats": 0.00092},
            {"method": "mean", "en_bits_per_byte": 1.396336, "zh_bits_per_byte": 5.605782, "en_kl_nats": 0.0004}]})
    out = tmp_path / "rep"
    report.build_report(root, out, stages=["base", "injection", "replay"], points=["base_model", "init"])
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert "| (source model, old vocabulary) | 1.3962 | 3.3399 | 0 |" in summary
    assert "| subword_mean (used) | 1.3965 | 3.9983 | 0.00092 |" in summary
    assert "| mean | 1.3963 | 5.6058 | 0.00040 |" in summary
    rep = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert [r["method"] for r in rep["init_comparison"]] == ["subword_mean", "mean"]


def test_report_13b_table_protocol_headers_not_run_and_bytes(tmp_path):
    """The 13B comparison: every score next to the published value of the same benchmark, the protocol in the
    column header, a benchmark without data shown as not run, the bytes behind each bits-per-byte figure."""
    root = tmp_path / "results" / "x"
    for k, p in enumerate(["base_model", "replay"]):
        _write(root / "evaluate" / p / "protocol.json", {"published": "colossal-llama-2-13b"})
        _write(root / "evaluate" / p / "benchmarks.json", {
            "mmlu": {"accuracy": 40.0 + k, "format": "mmlu", "shots": 5, "scoring": "first_token",
                     "prompt_style": "colossaleval", "split": "test", "excluded_total": 0},
            "gsm": {"accuracy": 10.0 + k, "format": "gsm", "shots": 8, "scoring": "generated",
                    "prompt_style": "colossaleval", "excluded_total": 0},
            "agieval": {"accuracy": 30.0, "format": "agieval", "shots": 5, "scoring": "first_token",
                        "prompt_style": "colossaleval", "excluded_total": 7},
            "ceval": {"status": "not_run", "format": "ceval", "shots": 5, "prompt_style": "colossaleval",
                      "not_run_reason": "not run: no data path (evaluate.benchmarks.ceval.path)"}})
        _write(root / "evaluate" / p / "bpb.json", {"languages": {
            "zh": {"bits_per_byte": 3.0 - k, "perplexity": 9.0, "tokens": 900 - 300 * k, "bytes": 2997,
                   "text_sha256": "ab" * 32}}})
    out = tmp_path / "rep"
    report.build_report(root, out, stages=[], points=["base_model", "replay"])
    summary = (out / "summary.md").read_text()
    assert "MMLU (mmlu): 5-shot, first-token logits, colossaleval prompt" in summary
    assert "GSM8K (gsm): 8-shot, generated answer, ColossalEval's GSM rule, colossaleval prompt" in summary
    assert "| replay | 41.00 | 11.00 | 30.00 | not run: no data path (evaluate.benchmarks.ceval.path) |" in summary
    assert "| Colossal-LLaMA-2-13b-base (published) | 56.42 | 58.83 | 54.69 | 60.30 |" in summary
    assert "| Llama-2-13B (published) | 55.35 | 31.31 | 40.07 | - |" in summary
    # benchmark by benchmark: published next to ours, excluded questions, differences
    assert ("| MMLU | 5-shot, first-token logits, colossaleval prompt | 5-shot, first-token logits, colossaleval prompt "
            "| 56.42 | 55.35 | 41.00 | 40.00 | 0 | none |") in summary
    assert "| AGIEval |" in summary and "| 54.69 | 40.07 | 30.00 | 30.00 | 7 | none |" in summary
    assert "| CMMLU |" in summary and "not in evaluate.benchmarks (add cmmlu with format cmmlu)" in summary
    assert "| 60.30 | - | not run: no data path (evaluate.benchmarks.ceval.path) |" in summary
    assert "leaderboard's test split" in summary  # a stated difference from ColossalEval
    # bits per byte: the bytes each figure covers, and that they are the same at every point
    assert "| zh bytes |" in summary and "| replay | 2.0000 | 2,997 | 600 | 9.00 |" in summary
    assert "zh: the same 2,997 bytes at every point" in summary
    html_text = (out / "benchmarks.html").read_text()
    assert "Where this project&#x27;s evaluation differs from ColossalEval&#x27;s" in html_text
