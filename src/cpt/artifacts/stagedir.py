"""A training stage directory (results/<exp>/train/<stage>/), the one owner of its names:

    final/                 the exported HF model (+ tokenizer) of the stage: the rule's declared output
    checkpoints/           step-NNNNNNNN/ checkpoints (state.json, scheduler.json, manifest.json, weights ...)
    checkpoints/latest     the name of the newest complete checkpoint
    metrics.jsonl          one row per logged step (step, tokens, loss, lr, grad_norm, tokens_per_s, ...)
    run.json               the run's facts: the launcher's key (settings + input identities) and the trainer's
                           (world size, attention, layout, memory); `update_run` is its one writer
    train_config.json      the trainer settings the launcher passed
    final/effective_config.json, checkpoints/step-N/effective_config.json
                           the settings as they ran (train.max_length after the dataset's, accumulation_steps after
                           an elastic resume): a train section cpt.train.config.from_mapping reads back
    tensorboard/, trace/   optional logs (TensorBoard events; per-rank sample traces)

When the stage is done, `seal_final` copies metrics.jsonl and run.json into final/ (FINAL_RECORD): the stage's
declared output then carries its own record, which the report reads (`record`).

`RUN_HISTORY` is what belongs to one run of the stage and is set aside together when the stage's settings or inputs
change (cpt.launch.stage).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cpt.core.atomic import write_text_atomic

FINAL = "final"
CHECKPOINTS = "checkpoints"
LATEST = "latest"
STATE = "state.json"
SCHEDULER = "scheduler.json"
CHECKPOINT_MANIFEST = "manifest.json"
METRICS = "metrics.jsonl"
RUN = "run.json"
TRAIN_CONFIG = "train_config.json"
EFFECTIVE_CONFIG = "effective_config.json"  # the training section as it ran: in every checkpoint and in final/
TENSORBOARD = "tensorboard"
TRACE = "trace"
RUN_HISTORY = (CHECKPOINTS, METRICS, TENSORBOARD, TRACE)
FINAL_RECORD = (METRICS, RUN)  # copied into final/ when the stage is done: the rule's output carries its record


class StageDir:
    """The paths of one training stage directory."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    @property
    def final(self) -> Path:
        return self.root / FINAL

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS

    @property
    def metrics(self) -> Path:
        return self.root / METRICS

    @property
    def run_file(self) -> Path:
        return self.root / RUN

    @property
    def train_config(self) -> Path:
        return self.root / TRAIN_CONFIG

    @property
    def tensorboard(self) -> Path:
        return self.root / TENSORBOARD

    def trace(self, rank: int) -> Path:
        return self.root / TRACE / f"rank-{rank:05d}.jsonl"

    def traces(self) -> list[Path]:
        return sorted((self.root / TRACE).glob("rank-*.jsonl"))

    def history(self) -> list[Path]:
        """The files and directories of a run that exist (see RUN_HISTORY)."""
        return [self.root / name for name in RUN_HISTORY if (self.root / name).exists()]

    def seal_final(self) -> list[str]:
        """Copy FINAL_RECORD into final/ (names copied)."""
        import shutil

        copied = []
        for name in FINAL_RECORD:
            if (self.root / name).is_file() and self.final.is_dir():
                shutil.copyfile(self.root / name, self.final / name)
                copied.append(name)
        return copied

    def record(self, name: str) -> Path:
        """A FINAL_RECORD file: final/'s copy when there is one (a sealed stage), else the live one."""
        sealed = self.final / name
        return sealed if sealed.is_file() else self.root / name

    def latest_checkpoint(self) -> Path | None:
        """The checkpoint checkpoints/latest names (None without a readable pointer)."""
        pointer = self.checkpoints / LATEST
        try:
            name = pointer.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            return None
        return self.checkpoints / name if name else None

    def read_run(self) -> dict:
        """run.json as a dict ({} when missing or unreadable)."""
        try:
            data = json.loads(self.run_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return {}
        return data if isinstance(data, dict) else {}

    def update_run(self, replace: bool = False, **fields) -> dict:
        """The one writer of run.json: merge `fields` into it (a dict value is merged one level deep, so the
        launcher's key and the trainer's facts live side by side); `replace=True` starts a new run's file."""
        data = {} if replace else self.read_run()
        for key, value in fields.items():
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key] = {**data[key], **value}
            else:
                data[key] = value
        self.root.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.run_file, json.dumps(data, indent=2, sort_keys=True) + "\n")
        return data
