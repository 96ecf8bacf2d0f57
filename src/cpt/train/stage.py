"""One training stage as the workflow runs it: settings check, stale-checkpoint handling, launch, exit codes.

Snakemake reruns a training stage for two different reasons, and they need opposite treatment:
- the stage's inputs or settings changed (new params, new data, new starting weights): checkpoints of the old run
  are stale and must not be resumed -- they are moved aside to `checkpoints.stale-<key>/`, never deleted;
- the previous run of the same stage stopped early (SIGKILL, preemption, time limit): resume from its latest
  checkpoint, which the trainer does by itself.
`run.json` in the stage directory records the key (settings + input identities) of the run that owns the
checkpoints; a different key means the first case.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping

from cpt.errors import PREEMPTED_EXIT_CODE, TrainError
from cpt.provenance import config_hash
from cpt.train.config import from_mapping

log = logging.getLogger(__name__)
WORKFLOW_KEYS = ("init_from", "name")  # stage-chaining keys of the workflow, not trainer settings


def trainer_section(section: Mapping[str, Any]) -> dict:
    return {k: v for k, v in section.items() if k not in WORKFLOW_KEYS}


def input_identity(path: str | os.PathLike) -> dict:
    """A cheap identity of a model or dataset directory: its provenance/manifest if any, else names and sizes."""
    p = Path(path)
    for name in ("manifest.json", "provenance.json"):
        f = p / name
        if f.is_file():
            data = json.loads(f.read_text(encoding="utf-8"))
            data.pop("created", None)
            data.pop("wall_seconds", None)
            return {"path": str(p), name: config_hash(data)}
    files = sorted((str(q.relative_to(p)), q.stat().st_size) for q in p.rglob("*") if q.is_file())
    return {"path": str(p), "files": config_hash(files)}


def run_key(section: Mapping[str, Any], model: str | os.PathLike, dataset: str | os.PathLike) -> str:
    cfg = from_mapping(trainer_section(section))
    return config_hash({"train": cfg.to_dict(), "model": input_identity(model), "dataset": input_identity(dataset)})


def set_aside_stale(output: Path, key: str) -> Path | None:
    """Move checkpoints/metrics of a run with another key to checkpoints.stale-<old key>/; returns that dir."""
    run_file = output / "run.json"
    if not run_file.is_file():
        stale = [output / n for n in ("checkpoints", "metrics.jsonl", "tensorboard", "trace") if (output / n).exists()]
        old = "unknown"
    else:
        old = json.loads(run_file.read_text(encoding="utf-8")).get("key", "unknown")
        stale = [] if old == key else [output / n for n in ("checkpoints", "metrics.jsonl", "tensorboard", "trace")
                                       if (output / n).exists()]
    if not stale:
        return None
    dest = output / f"checkpoints.stale-{old[:12]}-{time.strftime('%Y%m%d%H%M%S')}"
    dest.mkdir(parents=True)
    for item in stale:
        shutil.move(str(item), str(dest / item.name))
    log.warning("settings or inputs of this stage changed: the previous run's checkpoints were moved to %s", dest)
    return dest


THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def rank_threads_env(env: Mapping[str, str], nproc: int) -> dict[str, str]:
    """The thread settings of each of a rule's `nproc` ranks: the rule's CPUs divided between them, at least 1
    each. The rule's CPUs: a SLURM job's SLURM_CPUS_PER_TASK (resources.train.cpus_per_task, what srun gives the
    task that runs the ranks), else OMP_NUM_THREADS as Snakemake sets it from the rule's threads, else this
    machine's CPUs.

    Passed on unchanged, every rank would run the rule's whole budget of threads: 2 ranks x 2 threads on 2 cores
    trained SmolLM2-135M 4.3x slower than 2 x 1 (docs/benchmarks.md). `launch.env` still wins (it is set on the
    launch command line)."""
    budget = next((int(v) for v in (env.get("SLURM_CPUS_PER_TASK", ""), env.get("OMP_NUM_THREADS", ""))
                   if v.strip().isdigit() and int(v) > 0), None)
    if budget is None:
        budget = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    per_rank = str(max(1, budget // max(1, int(nproc))))
    return {name: per_rank for name in THREAD_VARS}


def local_launch_argv(nproc: int, train_args: list[str]) -> list[str]:
    """Single node: the preemption-aware torchrun wrapper (cpt.train.launch)."""
    return [sys.executable, "-m", "cpt.train.launch", "--standalone", "--nnodes", "1",
            "--nproc_per_node", str(nproc), "--", *train_args]


def run_stage(section: Mapping[str, Any], model: str | os.PathLike, dataset: str | os.PathLike,
              output: str | os.PathLike, nproc: int = 1, launcher=None) -> None:
    """Train one stage into <output>/final; resumes a stopped run of the same key; raises TrainError on failure.
    The stage directory stays locked (cpt.locks) for the whole run; the trainer processes inherit the lock."""
    from cpt.locks import writing

    out = Path(output)
    with writing([out]):
        _run_stage(section, model, dataset, out, nproc, launcher)


def _run_stage(section, model, dataset, out: Path, nproc: int, launcher) -> None:
    out.mkdir(parents=True, exist_ok=True)
    key = run_key(section, model, dataset)
    set_aside_stale(out, key)
    (out / "run.json").write_text(json.dumps({"key": key, "model": str(model), "dataset": str(dataset)}, indent=2),
                                  encoding="utf-8")
    cfg_file = out / "train_config.json"
    cfg_file.write_text(json.dumps(trainer_section(section), indent=2, sort_keys=True), encoding="utf-8")
    train_args = ["--config", str(cfg_file), "--model", str(model), "--dataset", str(dataset), "--output", str(out),
                  "--no-progress"]
    argv = (launcher or local_launch_argv)(nproc, train_args)
    log.info("launch: %s", " ".join(argv))
    threads = rank_threads_env(os.environ, nproc)
    log.info("each of the %d ranks runs %s threads (the rule's CPUs shared between its ranks)", nproc,
             threads["OMP_NUM_THREADS"])
    code = subprocess.call(argv, env={**os.environ, **threads})
    if code == PREEMPTED_EXIT_CODE:
        raise TrainError(f"{out}: preempted after a checkpoint; rerun the workflow to resume from it")
    if code != 0:
        raise TrainError(f"{out}: training exited with code {code}; see the log above (rerun resumes from the "
                         f"latest checkpoint if one was written)")
    if not (out / "final" / "config.json").is_file():
        raise TrainError(f"{out}/final: training finished without exporting the final model")
    from cpt.sft import write_sft_chat_template

    write_sft_chat_template(out / "final", dataset)  # SFT: HF apply_chat_template builds the ids training used
