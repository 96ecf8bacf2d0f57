"""The workflow test's tiny experiment (tests/workflow/tiny.yaml: stages base, injection, replay and sft, ddp, fp32)
run twice through Snakemake on CPU, once per training engine (train.defaults.engine: colossalai, then torch), and
compared stage by stage: logged steps, token counts and the largest loss difference. Prints a table and writes
benchmarks/results/engine_workflow.json.

    .venv/bin/python benchmarks/engine_workflow.py [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.workflow.conftest import TINY, snakemake, write_config  # noqa: E402

ENGINES = ("colossalai", "torch")


def run(engine: str, workdir: Path) -> float:
    cfg = yaml.safe_load(TINY.read_text(encoding="utf-8"))
    cfg["train"]["defaults"]["engine"] = engine
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    snakemake(workdir, write_config(workdir / "tiny.yaml", cfg))
    return time.time() - started


def losses(workdir: Path, stage: str) -> list[dict]:
    path = workdir / "results" / "tiny" / "train" / stage / "metrics.jsonl"
    return [r for r in map(json.loads, path.read_text(encoding="utf-8").splitlines()) if "loss" in r]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    root = args.workdir or Path(tempfile.mkdtemp(prefix="engine-workflow-"))
    seconds = {e: round(run(e, root / e), 1) for e in ENGINES}
    stages = yaml.safe_load(TINY.read_text(encoding="utf-8"))["train"]["stages"]
    rows = []
    for stage in stages:
        a, b = (losses(root / e, stage) for e in ENGINES)
        rows.append({"stage": stage, "steps_logged": [len(a), len(b)],
                     "tokens_equal": [r.get("tokens") for r in a] == [r.get("tokens") for r in b],
                     "max_abs_loss_diff": max((abs(x["loss"] - y["loss"]) for x, y in zip(a, b)), default=None)})
    print(f"{'stage':<10} {'steps (colossalai, torch)':<26} {'tokens equal':<13} max |loss diff|")
    for r in rows:
        print(f"{r['stage']:<10} {str(r['steps_logged']):<26} {str(r['tokens_equal']):<13} {r['max_abs_loss_diff']}")
    print("workflow seconds:", seconds)
    out = REPO / "benchmarks" / "results" / "engine_workflow.json"
    out.write_text(json.dumps({"stages": rows, "workflow_seconds": seconds}, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
