"""Experiment trackers next to metrics.jsonl (`train.loggers`): tensorboard, wandb (offline: files under the stage
directory, `wandb sync` uploads them later), dvclive (DVC's format: `dvc plots show` / DVC Studio read it).

metrics.jsonl ("jsonl") is always written by cpt.train.metrics.MetricsLogger, which hands every record it writes to
the trackers opened here; each tracker records the same numbers (`scalars(record)`: every finite number of the
record except `step`) at the record's step, so a tracker never disagrees with metrics.jsonl (tests/unit/
test_train_loggers.py reads each one back). Only rank 0 opens trackers. A tracker whose package is missing is an
error naming `train.loggers`, never a silent skip.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Sequence

from cpt.artifacts.stagedir import StageDir
from cpt.core.errors import ConfigError

LOGGERS = ("jsonl", "tensorboard", "wandb", "dvclive")
WANDB_DIR = "wandb"
DVCLIVE_DIR = "dvclive"


def scalars(record: dict) -> dict[str, float]:
    """The numbers a tracker records for one metrics.jsonl record: every finite int/float except `step`."""
    return {k: v for k, v in sorted(record.items()) if k != "step" and isinstance(v, (int, float))
            and not isinstance(v, bool) and math.isfinite(v)}


def _need(module: str, name: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ConfigError(f"train.loggers: {name!r} needs the package {module!r} ({e}); install the `trackers` extra "
                          "(pip install colossal-llama-cpt[trackers]) or remove it from train.loggers") from e


class TensorBoardLogger:
    def __init__(self, out_dir: Path, resume_step: int):
        tb = _need("torch.utils.tensorboard", "tensorboard")
        self.writer = tb.SummaryWriter(log_dir=str(StageDir(out_dir).tensorboard), purge_step=resume_step + 1)

    def log(self, step: int, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.writer.add_scalar(f"train/{key}", value, step)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()


class WandbLogger:
    """An offline W&B run under <stage>/wandb/ (WANDB_MODE is forced to offline: no network at run time)."""

    def __init__(self, out_dir: Path, resume_step: int, run_config: dict | None):
        wandb = _need("wandb", "wandb")
        out_dir.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("WANDB_SILENT", "true")
        # wandb.init(dir=D) writes D/wandb/offline-run-*/; no stats sampling, console capture, code or git capture
        settings = wandb.Settings(console="off", x_disable_stats=True, save_code=False, disable_git=True,
                                  disable_job_creation=True, x_save_requirements=False)
        self.run = wandb.init(mode="offline", dir=str(out_dir), project="colossal-llama-cpt",
                              name=f"{out_dir.name}-from-step-{resume_step}", config=run_config or {},
                              settings=settings)

    def log(self, step: int, values: dict[str, float]) -> None:
        self.run.log({f"train/{k}": v for k, v in values.items()}, step=step)

    def close(self) -> None:
        self.run.finish()


class DvcLiveLogger:
    """dvclive's files under <stage>/dvclive/ (plots/metrics/train/<key>.tsv, metrics.json); no DVC experiment is
    created (the workflow's own dvc.yaml declares the stage outputs). On resume, rows after the checkpoint's step
    (written before a crash) are dropped, as in metrics.jsonl."""

    def __init__(self, out_dir: Path, resume_step: int):
        dvclive = _need("dvclive", "dvclive")
        self.dir = out_dir / DVCLIVE_DIR
        if resume_step > 0:
            _truncate_tsv(self.dir / "plots" / "metrics", resume_step)
        self.live = dvclive.Live(dir=str(self.dir), resume=resume_step > 0, save_dvc_exp=False, dvcyaml=None,
                                 report=None)

    def log(self, step: int, values: dict[str, float]) -> None:
        self.live.step = step
        for key, value in values.items():
            self.live.log_metric(f"train/{key}", value)
        self.live.next_step()

    def close(self) -> None:
        self.live.end()


def _truncate_tsv(root: Path, resume_step: int) -> None:
    for path in root.rglob("*.tsv") if root.is_dir() else []:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
            fields = list(rows[0]) if rows else None
        if fields:
            with open(path, "w", newline="", encoding="utf-8") as f:
                w = csv.DictWriter(f, fieldnames=fields, delimiter="\t")
                w.writeheader()
                w.writerows(r for r in rows if int(r["step"]) <= resume_step)


def open_trackers(names: Sequence[str], out_dir: str | Path, resume_step: int = 0, run_config: dict | None = None
                  ) -> list:
    """The trackers of `train.loggers` (jsonl is MetricsLogger's own file, not opened here)."""
    unknown = [n for n in names if n not in LOGGERS]
    if unknown:
        raise ConfigError(f"train.loggers: unknown {unknown}; choose from {list(LOGGERS)}")
    out = Path(out_dir)
    opened = []
    for name in dict.fromkeys(names):
        if name == "tensorboard":
            opened.append(TensorBoardLogger(out, resume_step))
        elif name == "wandb":
            opened.append(WandbLogger(out, resume_step, run_config))
        elif name == "dvclive":
            opened.append(DvcLiveLogger(out, resume_step))
    return opened
