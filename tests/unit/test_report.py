"""cpt.report on a synthetic results/<exp> tree: every output written, numbers carried, missing inputs listed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cpt import report
from cpt.errors import RecordError


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
        _write(root / "dataset" / s / "manifest.json", {"buckets": ["bucket-00000"], "num_sequences": 10,
                                                        "num_tokens": 5120, "max_length": 512, "tokenizer": "x"})
    for k, p in enumerate(["base_model", "init"] + stages):
        _write(root / "evaluate" / p / "benchmarks.json", {
            "mmlu": {"accuracy": 25.0 + k, "correct": 1, "num_questions": 4, "shots": 5},
            "idioms": {"accuracy": 24.0 + 2 * k, "correct": 1, "num_questions": 4, "shots": 5}})
        _write(root / "evaluate" / p / "bpb.json", {"languages": {
            "zh": {"bits_per_byte": 3.0 - 0.3 * k, "perplexity": 100.0, "tokens": 10, "bytes": 30},
            "en": {"bits_per_byte": 2.0 + 0.05 * k, "perplexity": 50.0, "tokens": 10, "bytes": 30}}})
    _write(root / "corpus" / "raw" / "manifest.json", {"categories": ["news", "bible"], "records": 100,
                                                       "skipped": {"empty": 3}})


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
    assert "| Colossal-LLaMA-2-7B (published) | 53.06 | n/a |" in summary
    assert "final loss 8.5000 at step 5, 5,120 tokens" in summary
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
    r = runner.invoke(report.cli_report, ["--results", str(root), "--stage", "base", "--stage", "injection",
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
