"""What a locked config's smoke run (config/overlays/cpu-smoke.yaml) must produce, checked the same way wherever it
runs: locally (tests/workflow/test_locked_smoke.py, the 13B on the torch engine) and through the SLURM profile on
the 2-node test cluster (tests/slurm/test_slurm_locked_multinode.py, the 7B on the ColossalAI engine).
Shared here so both make the same checks, not copies of them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import sentencepiece as spm

from cpt.core.yamlio import read_yaml

REPO = Path(__file__).resolve().parents[2]
OVERLAY = REPO / "config" / "overlays" / "cpu-smoke.yaml"
ENGINE_TORCH = REPO / "config" / "overlays" / "engine-torch.yaml"
SHARDING = {"colossalai": None, "torch": "shard_grad_op"}  # how the torch engine runs the locked plugin zero2
PIECES = 69104  # the published vocabulary of Colossal-LLaMA-2


def make_smoke_inputs(wd: Path, env: dict) -> None:
    """`cpt smoke-inputs` in `wd`: data/smoke/ (tiny LLaMA-2, small real text, benchmark stand-ins)."""
    made = subprocess.run([sys.executable, "-m", "cpt.cli", "smoke-inputs", "--overlay", str(OVERLAY)], cwd=wd,
                          env=env, capture_output=True, text=True, timeout=600)
    assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-4000:]


def job_counts(text: str) -> dict[str, int]:
    """rule -> jobs, from Snakemake's "Job stats" table."""
    assert "Job stats:" in text, text[-4000:]
    table = text.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m.group(1) != "total"}


def check_plan(plan: dict[str, int], locked: Path) -> list[str]:
    """The dry run's plan holds the whole recipe: one train and one dataset job per locked stage, the tokenizer,
    model, evaluation and report rules. Returns the stages."""
    stages = list(read_yaml(locked)["train"]["stages"])
    assert plan["train"] == len(stages) == 3 and plan["dataset_stage"] == 3, plan
    assert {"tokenizer_pieces", "tokenizer_extended", "model_base_check", "model_init", "evaluate", "report"} <= set(plan)
    return stages


def check_results(wd: Path, locked: Path, engine: str) -> None:
    """The outputs of a finished smoke run of `locked` in `wd`: every stage trained on `engine` with the locked
    plugin and precision, the published vocabulary, the replay manifest, every listed benchmark evaluated, and the
    report next to the published model."""
    cfg = read_yaml(locked)
    name = cfg["experiment"]
    stages = list(cfg["train"]["stages"])
    res = wd / "results" / name
    for stage in stages:  # every stage trained with the engine asked for, the locked plugin and precision
        final = res / "train" / stage / "final"
        assert json.loads((final / "effective_config.json").read_text(encoding="utf-8"))["engine"] == engine
        trainer = json.loads((final / "run.json").read_text(encoding="utf-8"))["trainer"]
        got = (trainer["engine"], trainer["plugin"], trainer.get("sharding"), trainer["precision"])
        assert got == (engine, "zero2", SHARDING[engine], "bf16"), (stage, got)
    for tok in (res / "tokenizer" / "extended", res / "train" / stages[-1] / "final"):
        assert spm.SentencePieceProcessor(model_file=str(tok / "tokenizer.model")).get_piece_size() == PIECES
    manifest = json.loads((res / "dataset" / "replay" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["max_length"] == 4096 and len(manifest["buckets"]) == 10 and not manifest["empty_buckets"]
    assert manifest["selection"]["replay"]["from"] == ["pretrain", "injection"]
    assert manifest["selection"]["replay"]["tokens"] > 0  # the replay share was drawn from the earlier stages
    # the evaluation: every benchmark the locked config lists ran at every point (on the overlay's stand-ins of
    # the public layouts), and the report sets each score next to the published value of the same benchmark
    listed = list(cfg["evaluate"]["benchmarks"])
    for point in ("base_model", stages[-1]):
        got = json.loads((res / "evaluate" / point / "benchmarks.json").read_text(encoding="utf-8"))
        assert [n for n in listed if got[n].get("status") is None and got[n]["num_questions"] > 0] == listed
    assert got["agieval"]["excluded_total"] > 0 and got["gaokao"]["excluded_total"] > 0  # the 4-choice rule
    summary = (res / "report" / "summary.md").read_text(encoding="utf-8")
    size = name.rsplit("-", 1)[1]
    assert f"| Colossal-LLaMA-2-{size}-base (published) |" in summary
    assert f"### Next to the published Colossal-LLaMA-2-{size}-base" in summary
    assert f"{cfg['evaluate']['prompt_style']} prompt" in summary and "not run: no data path" not in summary
