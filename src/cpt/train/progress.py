"""What a training run tells its log: progress lines from rank 0, third-party warnings once (not once per rank).

- `ProgressLog` (rank 0): one line every `train.progress_interval` optimizer steps, at the last step and at each
  checkpoint -- step/total, tokens, loss, lr, tokens/s over the interval, elapsed, ETA -- on stderr, which is the
  SLURM job log under sbatch and the terminal otherwise.
- `setup_rank_output(rank)`, called first thing in every trainer process: ranks other than 0 silence Python
  warnings and library loggers (transformers, ColossalAI, torch's C++ warnings), and rank 0 shows each distinct
  warning once, so each warning appears once per run; on rank 0, when CPT_LOG_FILE names a file (cpt.workflow.smk sets it to the Snakemake rule's log), everything written to
  stderr is appended there too, so the rule log holds the progress, the resume/fallback messages and errors.
"""

from __future__ import annotations

import io
import logging
import math
import os
import sys
import time
import warnings

LOG_FILE_ENV = "CPT_LOG_FILE"


class _Tee(io.TextIOBase):
    """stderr that also appends to a file (line by line; the file is opened per write, so appends interleave
    cleanly with the parent's log lines)."""

    def __init__(self, stream, path: str):
        self.stream, self.path = stream, path

    def write(self, text: str) -> int:
        self.stream.write(text)
        try:
            with open(self.path, "a", encoding="utf-8", errors="replace") as f:
                f.write(text.replace("\r", "\n"))
        except OSError:
            pass
        return len(text)

    def flush(self):
        self.stream.flush()

    def isatty(self):
        return False

    def fileno(self):
        return self.stream.fileno()


def setup_rank_output(rank: int | None = None) -> None:
    """Per process, before heavy imports: warnings once (rank 0 only), rank 0's stderr into CPT_LOG_FILE."""
    rank = int(os.environ.get("RANK", "0")) if rank is None else rank
    if rank != 0:
        warnings.simplefilter("ignore")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
        os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
        logging.getLogger().setLevel(logging.ERROR)
        for name in ("transformers", "colossalai", "torch", "datasets"):
            logging.getLogger(name).setLevel(logging.ERROR)
        return
    # each distinct warning once per run: Python shows a warning again whenever a library's catch_warnings()
    # resets its registry (ColossalAI's collectives then warn at every call), so rank 0 prints each text once
    if not getattr(warnings.showwarning, "_cpt_once", False):
        shown: set = set()
        original = warnings.showwarning

        def show_once(message, category, filename, lineno, file=None, line=None):
            key = (category, str(message))
            if key not in shown:
                shown.add(key)
                original(message, category, filename, lineno, file, line)

        show_once._cpt_once = True
        warnings.showwarning = show_once
    path = os.environ.get(LOG_FILE_ENV)
    if path and not isinstance(sys.stderr, _Tee):
        sys.stderr = _Tee(sys.stderr, path)


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h:d}:{m:02d}:{s:02d}"


class ProgressLog:
    """Rank 0's progress lines (see the module doc). Times count from this process's first step, so the ETA of a
    resumed run is based on its own speed."""

    def __init__(self, enabled: bool, total_steps: int, start_step: int, start_tokens: int, interval: int,
                 stream=None):
        self.enabled = enabled
        self.total = total_steps
        self.interval = max(1, int(interval))
        self.stream = stream
        self.t0 = time.monotonic()
        self.start_step = start_step
        self.mark = (time.monotonic(), start_step, start_tokens)  # (time, step, tokens) of the last line
        self.last: dict | None = None
        self.emitted_step: int | None = None

    def _emit(self, text: str) -> None:
        stream = self.stream or sys.stderr
        print(text, file=stream, flush=True)

    def line(self, record: dict, note: str = "") -> str:
        now = time.monotonic()
        t_mark, s_mark, tok_mark = self.mark
        step, tokens = int(record["step"]), int(record["tokens"])
        dt = now - t_mark
        tps = (tokens - tok_mark) / dt if dt > 0 and tokens > tok_mark else record.get("tokens_per_s", float("nan"))
        done_here = step - self.start_step
        elapsed = now - self.t0
        eta = (self.total - step) * elapsed / done_here if done_here > 0 else float("nan")
        pct = 100.0 * step / self.total if self.total else 100.0
        loss = record.get("loss")
        text = (f"train step {step}/{self.total} ({pct:.1f}%) | tokens {tokens:,} | "
                f"loss {loss:.4f} | lr {record.get('lr', float('nan')):.3e} | {tps:,.0f} tokens/s | "
                f"elapsed {_duration(elapsed)} | ETA {_duration(eta)}"
                if loss is not None else f"train step {step}/{self.total}")
        if note:
            text += f" | {note}"
        self.mark = (now, step, tokens)
        return text

    def step(self, record: dict) -> None:
        """After each optimizer step."""
        self.last = record
        if not self.enabled:
            return
        step = int(record["step"])
        if step % self.interval == 0 or step == self.total:
            self._emit(self.line(record))
            self.emitted_step = step

    def checkpoint(self, path, seconds: float | None = None) -> None:
        """After a checkpoint was written: its name (and the step's numbers, unless that line was just printed)."""
        if not self.enabled or self.last is None:
            return
        took = f" in {seconds:.1f} s" if seconds is not None else ""
        step = int(self.last["step"])
        if self.emitted_step == step:
            self._emit(f"train step {step}/{self.total} | checkpoint {path} written{took}")
        else:
            self._emit(self.line(self.last, note=f"checkpoint {path} written{took}"))
            self.emitted_step = step

    def message(self, text: str) -> None:
        if self.enabled:
            self._emit(text)
