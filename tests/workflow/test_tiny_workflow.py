"""The whole recipe through the real Snakefile on a tiny config: corpus -> clean -> tokenizer -> model -> dataset ->
train (torchrun, ColossalAI, 2 ranks) -> evaluate -> report; then reruns and what a changed parameter reruns."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import sentencepiece as spm

from .conftest import snakemake, write_config

pytestmark = [pytest.mark.workflow, pytest.mark.slow]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_config):
    workdir = tmp_path_factory.mktemp("tiny-workflow")
    cfg = write_config(workdir / "tiny.yaml", tiny_config)
    snakemake(workdir, cfg)
    return workdir, cfg, workdir / "results" / tiny_config["experiment"]


def load_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def test_every_stage_output_has_provenance(tiny_run):
    _, _, res = tiny_run
    for rel in ["corpus/raw", "corpus/train", "corpus/heldout", "clean", "tokenizer/base", "tokenizer/extended",
                "model/base", "model/init", "dataset/base", "dataset/injection", "dataset/replay",
                "train/base/final", "train/injection/final", "train/replay/final", "evaluate/replay"]:
        prov = load_json(res / rel / "provenance.json")
        assert prov["config_sha256"] and prov["versions"]["torch"], rel


def test_tokenizer_extended_exactly_reachable_english_unchanged(tiny_run, tiny_config):
    _, _, res = tiny_run
    sp = spm.SentencePieceProcessor(model_file=str(res / "tokenizer/extended/tokenizer.model"))
    assert sp.get_piece_size() == tiny_config["tokenizer"]["vocab_size"]
    report = load_json(res / "tokenizer/extended/expansion.json")
    assert report["reachable"] == report["added"] == tiny_config["tokenizer"]["vocab_size"] - 32000
    assert report["english"]["identical"] and report["english"]["lines"] > 0
    comp = load_json(res / "tokenizer/compression.json")
    assert (res / "tokenizer/compression.md").is_file()
    assert "zh" in json.dumps(comp)
    # the cleaned corpus fed the split (clean.enabled)
    assert load_json(res / "clean/report.json")


def test_models_load_with_transformers(tiny_run, tiny_config):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, _, res = tiny_run
    for rel in ["model/init", "train/base/final", "train/injection/final", "train/replay/final"]:
        model = AutoModelForCausalLM.from_pretrained(res / rel)
        tok = AutoTokenizer.from_pretrained(res / rel)
        assert model.config.vocab_size >= len(tok)
    init = AutoModelForCausalLM.from_pretrained(res / "model/init")
    assert init.config.vocab_size % 64 == 0  # pad_to_multiple_of: 64
    assert len(AutoTokenizer.from_pretrained(res / "model/init")) == tiny_config["tokenizer"]["vocab_size"]


def test_datasets_lose_nothing_and_keep_bucket_order(tiny_run):
    _, _, res = tiny_run
    for stage in ["base", "injection", "replay"]:
        man = load_json(res / "dataset" / stage / "manifest.json")
        assert man["tokens"]["lost_by_packing"] == 0
        assert man["tokens"]["out"] == man["tokens"]["selected"]
        assert man["buckets"] == sorted(man["buckets"])
        for bucket in man["buckets"]:
            assert (res / "dataset" / stage / bucket / "dataset_info.json").is_file()


def test_training_loss_decreases_and_chain_is_followed(tiny_run):
    _, _, res = tiny_run
    rows = [json.loads(line) for line in (res / "train/base/metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["loss"] < rows[0]["loss"]
    runs = {s: load_json(res / "train" / s / "run.json") for s in ["base", "injection", "replay"]}
    assert runs["base"]["model"].endswith("model/base")
    assert runs["injection"]["model"].endswith("model/init")
    assert runs["replay"]["model"].endswith("train/injection/final")


def test_training_progress_in_the_rule_log_and_artifacts_readable(tiny_run):
    """Rank 0's progress lines reach the rule's log; warnings appear once (not once per rank); every artifact
    has the mode the umask asks for (safetensors alone writes 0600)."""
    import os
    import stat

    workdir, _, res = tiny_run
    log = (workdir / "logs" / "tiny" / "train-base.log").read_text(encoding="utf-8")
    steps = re.findall(r"train step (\d+)/(\d+) \([\d.]+%\) \| tokens [\d,]+ \| loss [\d.]+ \| lr \S+ \| "
                       r"[\d,]+ tokens/s \| elapsed \d+:\d\d:\d\d \| ETA \S+", log)
    assert steps and steps[-1][0] == steps[-1][1], log[-3000:]  # the last step is always reported
    assert len(steps) == len(set(steps))  # rank 0 only
    assert re.search(r"checkpoint \S+/checkpoints/step-\d{8} written in [\d.]+ s", log)
    warnings = [line for line in log.splitlines() if "Warning:" in line]
    assert len(warnings) == len(set(warnings)), warnings
    mask = os.umask(0)
    os.umask(mask)
    for rel in ["model/base", "model/init", "train/base/final", "train/replay/final", "dataset/base"]:
        for f in (res / rel).rglob("*"):
            if f.is_file():
                assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~mask, (f, oct(f.stat().st_mode))
    ckpt_files = [f for f in (res / "train" / "base" / "checkpoints").rglob("*.safetensors")]
    assert ckpt_files and all(stat.S_IMODE(f.stat().st_mode) == 0o666 & ~mask for f in ckpt_files)


def test_evaluation_and_report(tiny_run, tiny_config):
    workdir, cfg, res = tiny_run
    for point in ["base", "init", "replay"]:
        bench = load_json(res / "evaluate" / point / "benchmarks.json")
        assert bench["mmlu"]["num_questions"] == 57  # one question per subject
        assert bench["idioms"]["num_questions"] == 40
        assert "zh" in json.dumps(load_json(res / "evaluate" / point / "bpb.json"))
    summary = (res / "report" / "summary.md").read_text(encoding="utf-8")
    for heading in ["Tokenizer", "Training", "Bits per byte", "Benchmarks", "Corpus by category",
                    "Tokens per stage by category", "## Cost"]:
        assert heading in summary
    assert "…" not in summary  # per-category numbers, none elided
    for cat in tiny_config["corpus"]["categories"]:
        assert f"| {cat} |" in summary, cat
    rep = load_json(res / "report" / "report.json")
    assert rep["loss_segments"]["tokens"]["vocabulary_changes"], "the 32,000 -> extended change is marked"
    assert all(s["rate_source"] == "measured" for s in rep["cost"]["stages"]), rep["cost"]
    snakemake(workdir, cfg, "--report", str(workdir / "report.html"))
    html = (workdir / "report.html").read_text(encoding="utf-8", errors="replace")
    assert "loss_by_step.png" in html and "bpb.png" in html


def test_rerun_does_nothing(tiny_run):
    workdir, cfg, _ = tiny_run
    out = snakemake(workdir, cfg, "-n")
    assert "Nothing to be done" in out.stdout + out.stderr


def jobs_to_run(workdir, cfg):
    """Rule names a dry run would execute (with the reasons Snakemake gives)."""
    out = snakemake(workdir, cfg, "-n", "--quiet", "rules")
    text = out.stdout + out.stderr
    if "Nothing to be done" in text:
        return set()
    return {m.group(1) for m in re.finditer(r"^(\w+)\s+\d+$", text, re.M)} - {"all", "total", "job"}


def planned_jobs(workdir, cfg):
    """(rule, wildcards) of every job a dry run would execute."""
    out = snakemake(workdir, cfg, "-n")
    jobs = set()
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", out.stdout + out.stderr):
        m = re.match(r"(?:local)?rule (\w+):", block)
        if m and m.group(1) != "all":
            wc = re.search(r"^\s+wildcards: (.+)$", block, re.M)
            jobs.add((m.group(1), wc.group(1).strip() if wc else ""))
    return jobs


def test_changing_the_replay_learning_rate_reruns_only_replay(tiny_run, tiny_config):
    workdir, _, _ = tiny_run
    changed = json.loads(json.dumps(tiny_config))
    changed["train"]["stages"]["replay"]["lr"] = 5.0e-4
    cfg = write_config(workdir / "changed-lr.yaml", changed)
    # replay, and the sft stage that starts from replay's weights; their evaluations; the report. Nothing else.
    assert planned_jobs(workdir, cfg) == {("train", "stage=replay"), ("evaluate", "point=replay"),
                                          ("train", "stage=sft"), ("evaluate", "point=sft"), ("report", "")}


def test_changing_max_length_reruns_datasets_and_training_not_tokenizer(tiny_run, tiny_config):
    workdir, _, _ = tiny_run
    changed = json.loads(json.dumps(tiny_config))
    changed["dataset"]["max_length"] = 96
    cfg = write_config(workdir / "changed-max-length.yaml", changed)
    jobs = planned_jobs(workdir, cfg)
    rules = {rule for rule, _ in jobs}
    assert {("dataset_stage", f"stage={s}") for s in ["base", "injection", "replay"]} <= jobs
    assert {("train", f"stage={s}") for s in ["base", "injection", "replay"]} <= jobs
    assert not rules & {"tokenizer_base", "tokenizer_pieces", "tokenizer_extended", "corpus_raw", "clean_finalize"}
    # model_init reruns only because the tiny config extends the model trained by stage `base`


def test_changing_a_tokenizer_parameter_reruns_tokenizer_not_corpus(tiny_run, tiny_config):
    workdir, _, _ = tiny_run
    changed = json.loads(json.dumps(tiny_config))
    changed["tokenizer"]["expansion"]["english_lines"] = 400
    cfg = write_config(workdir / "changed-tokenizer.yaml", changed)
    rules = jobs_to_run(workdir, cfg)
    assert "tokenizer_extended" in rules
    assert not rules & {"corpus_raw", "corpus_split", "clean_prepare", "clean_finalize", "tokenizer_base",
                        "tokenizer_pieces"}


def test_changing_the_init_method_reruns_init_and_downstream_only(tiny_run, tiny_config):
    workdir, _, _ = tiny_run
    changed = json.loads(json.dumps(tiny_config))
    changed["model"]["init"]["method"] = "mean"
    cfg = write_config(workdir / "changed-init.yaml", changed)
    rules = jobs_to_run(workdir, cfg)
    assert {"model_init", "train", "evaluate", "report"} <= rules
    assert not rules & {"tokenizer_extended", "tokenizer_pieces", "dataset_stage", "model_base", "corpus_raw"}
