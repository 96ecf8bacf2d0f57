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

from cpt.artifacts.stagedir import StageDir
from cpt.core.errors import PREEMPTED_EXIT_CODE, TrainError
from cpt.core.provenance import config_hash
from cpt.launch.plan import stage_launcher
from cpt.launch.resources import rank_threads_env
from cpt.launch.torchrun import preempted_since
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
    sd = StageDir(output)
    if not sd.run_file.is_file():
        stale = sd.history()
        old = "unknown"
    else:
        old = sd.read_run().get("key", "unknown")
        stale = [] if old == key else sd.history()
    if not stale:
        return None
    dest = output / f"checkpoints.stale-{old[:12]}-{time.strftime('%Y%m%d%H%M%S')}"
    dest.mkdir(parents=True)
    for item in stale:
        shutil.move(str(item), str(dest / item.name))
    log.warning("settings or inputs of this stage changed: the previous run's checkpoints were moved to %s", dest)
    return dest


def _check_launch(code: int, out: Path, started: float, launcher) -> None:
    """The launch's exit code as the stage's outcome: preempted, a lost node named, a failure, or nothing."""
    # On several nodes srun's code is not always 75 after a preemption: the first node's wrapper to exit 75 makes
    # srun (--kill-on-bad-exit) terminate the other tasks and report SIGTERM (143). The checkpoint this launch
    # wrote and marked preempted is what counts.
    if code == PREEMPTED_EXIT_CODE or (code != 0 and preempted_since(out, started)):
        raise TrainError(f"{out}: preempted after a checkpoint (launcher exit code {code}); rerun the workflow to "
                         f"resume from it")
    if code != 0:
        from cpt.launch.nodes import lost_nodes_message

        lost = lost_nodes_message(os.environ, getattr(launcher, "hosts", None))
        if lost:
            raise TrainError(f"{out}: {lost} during training (launcher exit code {code}); a rerun resumes from the "
                             f"latest verified checkpoint (on fewer nodes with resources.train.min_nodes)")
        raise TrainError(f"{out}: training exited with code {code}; see the log above (rerun resumes from the "
                         f"latest checkpoint if one was written)")


def run_stage(section: Mapping[str, Any], model: str | os.PathLike, dataset: str | os.PathLike,
              output: str | os.PathLike, nproc: int = 1, launcher=None) -> None:
    """Train one stage into <output>/final; resumes a stopped run of the same key; raises TrainError on failure.
    The stage directory stays locked (cpt.core.locks) for the whole run; the trainer processes inherit the lock."""
    from cpt.core.locks import writing

    out = Path(output)
    with writing([out]):
        _run_stage(section, model, dataset, out, nproc, launcher)


def _run_stage(section, model, dataset, out: Path, nproc: int, launcher) -> None:
    out.mkdir(parents=True, exist_ok=True)
    key = run_key(section, model, dataset)
    sd = StageDir(out)
    from cpt.launch.nodes import attempt_record, vanished_attempt_message

    previous = sd.read_run()
    if previous.get("key") == key:  # the same run's previous attempt (another key: set aside below)
        vanished = vanished_attempt_message(previous.get("launch"), os.environ)
        if vanished:  # e.g. the node running its batch script was lost: nothing was left to report it then
            # on stderr, as the launch line: the job log of record, whether or not the rule set up logging
            print(f"{out}: {vanished}; resuming from the latest verified checkpoint", file=sys.stderr, flush=True)
    set_aside_stale(out, key)
    sd.update_run(replace=True, key=key, model=str(model), dataset=str(dataset))
    cfg_file = sd.train_config
    cfg_file.write_text(json.dumps(trainer_section(section), indent=2, sort_keys=True), encoding="utf-8")
    train_args = ["--config", str(cfg_file), "--model", str(model), "--dataset", str(dataset), "--output", str(out),
                  "--no-progress"]
    launcher = launcher or stage_launcher({"nodes": 1}, {"mode": "local"})
    argv = launcher(nproc, train_args)
    log.info("launch: %s", " ".join(argv))
    threads = rank_threads_env(os.environ, nproc)
    log.info("each of the %d ranks runs %s threads (the rule's CPUs shared between its ranks)", nproc,
             threads["OMP_NUM_THREADS"])
    started = time.time()
    from cpt.core.procs import die_with_parent

    # open until the launch's outcome is known: an attempt that never closes it is named by the next one
    sd.update_run(launch=attempt_record(os.environ, getattr(launcher, "hosts", None), started))
    code = subprocess.call(argv, env={**os.environ, **threads}, preexec_fn=die_with_parent)  # dies with us
    # closed once the outcome is known (after the lost-node query, which takes seconds): a stage killed before
    # that (SLURM ending the job for a lost node, a signal raised as an exception) leaves it open
    try:
        _check_launch(code, out, started, launcher)
    except TrainError:
        sd.update_run(launch={"exit_code": code, "ended": time.time()})
        raise
    sd.update_run(launch={"exit_code": code, "ended": time.time()})
    if not (sd.final / "config.json").is_file():
        raise TrainError(f"{out}/final: training finished without exporting the final model")
    from cpt.dataset.sft import write_sft_chat_template

    sd.seal_final()  # final/ carries metrics.jsonl and run.json (what the report reads)
    from cpt.report.model_card import base_model_name, write_model_card

    write_model_card(sd.final, out.name, base_model_name(model), source_model=model)  # README.md + license files
    write_sft_chat_template(sd.final, dataset)  # SFT: HF apply_chat_template builds the ids training used
