"""The locked recipe configs end to end on CPU: the real DAG of config/colossal-llama-2-7b.yaml and -13b.yaml with
only the scale overlay config/overlays/cpu-smoke.yaml (tiny LLaMA-2 carrying the real tokenizer, small real text,
step caps, 2 ranks). Every rule of the DAG runs; the final tokenizer has exactly the published 69,104 pieces.
The 7B runs on the published ColossalAI engine; the 13B also gets config/overlays/engine-torch.yaml (every stage on
PyTorch's own engine: zero2 bf16 as FSDP2 shard-grad-op), so both engines run a locked config in CI at the cost of
one smoke run each."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import sentencepiece as spm

from cpt.core.yamlio import read_yaml

from .conftest import REPO, snakemake

pytestmark = [pytest.mark.workflow, pytest.mark.slow]
OVERLAY = REPO / "config" / "overlays" / "cpu-smoke.yaml"
ENGINE_TORCH = REPO / "config" / "overlays" / "engine-torch.yaml"
SHARDING = {"colossalai": None, "torch": "shard_grad_op"}  # how the torch engine runs the locked plugin zero2


def job_counts(text: str) -> dict[str, int]:
    """rule -> jobs, from Snakemake's "Job stats" table."""
    table = text.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m.group(1) != "total"}


@pytest.mark.parametrize("name, engine", [("colossal-llama-2-7b", "colossalai"), ("colossal-llama-2-13b", "torch")])
def test_locked_config_runs_end_to_end_on_cpu(tmp_path, name, engine):
    locked = REPO / "config" / f"{name}.yaml"
    overlays = (OVERLAY, ENGINE_TORCH) if engine == "torch" else (OVERLAY,)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    made = subprocess.run([sys.executable, "-m", "cpt.cli", "smoke-inputs", "--overlay", str(OVERLAY)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600)
    assert made.returncode == 0, made.stderr[-4000:]
    plan = job_counts(snakemake(tmp_path, locked, "-n", overlays=overlays).stdout)
    stages = list(read_yaml(locked)["train"]["stages"])
    assert plan["train"] == len(stages) == 3 and plan["dataset_stage"] == 3
    assert {"tokenizer_pieces", "tokenizer_extended", "model_base_check", "model_init", "evaluate", "report"} <= set(plan)

    run = snakemake(tmp_path, locked, overlays=overlays)
    text = run.stdout + run.stderr
    ran: dict[str, int] = {}
    for rule in re.findall(r"Finished jobid: \d+ \(Rule: (\w+)\)", text):
        ran[rule] = ran.get(rule, 0) + 1
    assert ran == plan  # every rule of the DAG ran, each as often as planned

    res = tmp_path / "results" / name
    for stage in stages:  # every stage trained with the engine asked for, the locked plugin and precision
        final = res / "train" / stage / "final"
        assert json.loads((final / "effective_config.json").read_text(encoding="utf-8"))["engine"] == engine
        trainer = json.loads((final / "run.json").read_text(encoding="utf-8"))["trainer"]
        got = (trainer["engine"], trainer["plugin"], trainer.get("sharding"), trainer["precision"])
        assert got == (engine, "zero2", SHARDING[engine], "bf16"), (stage, got)
    for tok in (res / "tokenizer" / "extended", res / "train" / stages[-1] / "final"):
        assert spm.SentencePieceProcessor(model_file=str(tok / "tokenizer.model")).get_piece_size() == 69104
    manifest = json.loads((res / "dataset" / "replay" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["max_length"] == 4096 and len(manifest["buckets"]) == 10 and not manifest["empty_buckets"]
    assert manifest["selection"]["replay"]["from"] == ["pretrain", "injection"]
    assert manifest["selection"]["replay"]["tokens"] > 0  # the replay share was drawn from the earlier stages
    # the evaluation: every benchmark the locked config lists ran at every point (on the overlay's stand-ins of
    # the public layouts), and the report sets each score next to the published value of the same benchmark
    cfg = read_yaml(locked)
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
    again = snakemake(tmp_path, locked, "-n", overlays=overlays)
    assert "Nothing to be done" in again.stdout + again.stderr
