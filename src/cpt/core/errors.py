"""One exception type per failure family. Messages name the file:line or the config key and say what to do."""

from __future__ import annotations

# The exit status of a run that stopped at a checkpoint written on a signal (SIGTERM/SIGUSR1): sysexits' EX_TEMPFAIL,
# "rerun to resume". The trainer exits with it, the torchrun wrapper and srun pass it on, the stage reports it.
PREEMPTED_EXIT_CODE = 75


class CptError(Exception):
    """Base class of every error this project raises on purpose."""


class ConfigError(CptError):
    """A config key is missing, ill-typed or has a bad value. The message names the key."""


class RecordError(CptError):
    """A jsonl record is malformed. The message names file:line."""

    def __init__(self, path, line: int | None, reason: str, message: str | None = None):
        self.path = str(path)
        self.line = line
        self.reason = reason
        self.detail = message
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message or reason}")

    def __reduce__(self):  # picklable across worker processes (multiprocessing pools)
        return (type(self), (self.path, self.line, self.reason, self.detail))


class DataSourceError(CptError):
    """A raw data source (downloaded package, user directory) is missing or not what was pinned."""


class TokenizerError(CptError):
    """A tokenizer cannot be built, converted, extended or verified."""


class ModelError(CptError):
    """A model directory is missing, inconsistent with its tokenizer, or cannot be extended."""


class DatasetError(CptError):
    """Dataset preparation (packing, bucketing, shards) failed."""


class TrainError(CptError):
    """A training run cannot start or continue (plugin/hardware mismatch, bad checkpoint ...)."""


class EvalError(CptError):
    """A benchmark file or evaluation setting is malformed."""


class OutputLockedError(CptError):
    """Another process is writing the same output directory (or file). The message names it and the holder."""


class CheckpointError(TrainError):
    """A checkpoint is corrupt, incomplete, unsafe to load, or cannot be written (disk full ...)."""


def describe(exc: BaseException) -> str:
    """The message of an error plus its `add_note` hints, one per line (what the CLIs print)."""
    lines = [str(exc)]
    lines.extend(str(n) for n in getattr(exc, "__notes__", ()) or ())
    return "\n".join(lines)
