"""The training program: one stage, one HF model dir in, one HF model dir out; resumable and preemptible.

Launched by torchrun (one process per device) or run as a single process. Every rank runs `train()`.
Exit codes: 0 done, 75 (EX_TEMPFAIL) preempted after a checkpoint (rerun the same command to resume).
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

from cpt.core.errors import PREEMPTED_EXIT_CODE
from cpt.train import checkpoint as ckpt
from cpt.train import lora
from cpt.train.config import TrainConfig
from cpt.train.runtime import all_reduce_max, check_ranks_agree, peak_memory_bytes, update_run_json
from cpt.train.trainer import RESUME_MUTABLE_KEYS, Trainer  # noqa: F401 (RESUME_MUTABLE_KEYS: its old home)

PREEMPT_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
# fault injection for tests of crash recovery: SIGKILL this process (rank 0) right after this optimizer step
FAULT_ENV = "CPT_TRAIN_FAULT_SIGKILL_AFTER_STEP"
HANG_ENV = "CPT_TRAIN_FAULT_HANG_AFTER_STEP"  # tests: the last rank stops answering after this step


@dataclass
class RunResult:
    exit_code: int
    step: int
    tokens: int
    final_dir: Path | None = None
    history: list = field(default_factory=list)
    params_sha256: str | None = None
    padding_slots_per_epoch: int = 0
    effective_config: dict | None = None


class PreemptFlag:
    """Set by SIGTERM/SIGUSR1; the loop all-reduces it each step so every rank stops after the same step."""

    def __init__(self):
        self.signum: int | None = None
        self._previous = {}

    def install(self):
        for sig in PREEMPT_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signum = signum

    def restore(self):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    @property
    def raised(self) -> bool:
        return self.signum is not None


def train(cfg: TrainConfig, model_dir: str | Path, dataset_dir: str | Path | None, output_dir: str | Path,
          benchmark: dict | None = None, progress: bool = True) -> RunResult:
    """Train one stage. `benchmark` = {"seq_len": int, "steps": int} trains on random tokens instead of a dataset
    and writes no checkpoints."""
    preempt = PreemptFlag().install()
    trainer = Trainer(cfg, model_dir, dataset_dir, output_dir, benchmark, progress)
    try:
        trainer.setup()
        return _run(trainer, preempt, benchmark)
    finally:
        trainer.close()
        preempt.restore()


def _run(t: Trainer, preempt: PreemptFlag, benchmark: dict | None) -> RunResult:
    fault_step = int(os.environ.get(FAULT_ENV, "0") or 0)
    stopped = False
    while t.step < t.total_steps:
        if t.train_step(preempt.raised) is None:
            stopped = True
            break
        if not benchmark and (t.step % t.cfg.save_interval == 0 or t.step == t.total_steps):
            t.checkpoint()
        if fault_step and t.step == fault_step and t.rank == 0:
            os.kill(os.getpid(), signal.SIGKILL)
        if t.step == int(os.environ.get(HANG_ENV, "0") or 0) and t.rank == t.world - 1:
            signal.pause()  # a hung rank: the others block in the next collective
    if stopped:
        resume_point = None
        if t.step != t.last_saved:
            resume_point = t.checkpoint(stopped=True)
        elif t.rank == 0:
            # the signal came right after a periodic save (or the resume): that checkpoint is the resume
            # point; mark it, so the launcher reports "preempted" (75) instead of torchrun's failure code
            resume_point = ckpt.latest_checkpoint(t.stage.checkpoints)
            if resume_point is not None:
                ckpt.mark_preempted(resume_point)
        if resume_point is not None:
            t.say(f"preempted by signal {preempt.signum}: checkpoint {resume_point.name} (step {t.step}) saved; "
                  f"rerun the same command to resume")
        else:
            t.say(f"preempted by signal {preempt.signum} before the first step: nothing to save, no checkpoint "
                  f"written; rerun the same command to start")
        return RunResult(PREEMPTED_EXIT_CODE, t.step, t.tokens_seen, None, t.history)
    final = None
    dev = t.dev
    (peak_mem,) = all_reduce_max([peak_memory_bytes(dev)], dev)
    if t.rank == 0:
        update_run_json(t.output, {"peak_memory_bytes_max_rank": int(peak_mem), "steps": t.step})
    digest = check_ranks_agree(t.model, t.pt)
    memory = lora.footprint(t.model, t.optimizer, dev if dev == "cpu" else t._reduce_device())
    if t.rank == 0:  # trainable parameters, optimizer-state bytes; the LoRA settings that ran
        update_run_json(t.output, {**memory, "lora": t.lora_stage.facts() if t.lora_stage else None})
    if not benchmark:
        final = t.export(t.pt.train_dtype)
    return RunResult(0, t.step, t.tokens_seen, final, t.history, digest, t.sampler.padding_slots_per_epoch(),
                     t.effective_config())
