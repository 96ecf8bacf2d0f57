"""Preemption-aware torchrun wrapper: `python -m cpt.launch.torchrun [torchrun options] -- [cpt.train options]`.

torchrun itself exits 1 whenever a worker exits non-zero and dies on SIGUSR1, so the trainer's exit code 75
("preempted, checkpoint saved, rerun to resume") would not reach SLURM. This wrapper
- starts torchrun with SIGUSR1 ignored (inherited), so a job-wide SLURM warning signal cannot kill it,
- on SIGTERM/SIGUSR1/SIGINT sends SIGUSR1 to the trainer processes (torchrun's children), which finish the
  current step, save a checkpoint and exit 75, then waits for torchrun (no 30 s torchrun kill timeout applies),
- exits 75 when the run stopped at a checkpoint written on preemption, otherwise with torchrun's code.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from cpt.artifacts.stagedir import STATE, StageDir
from cpt.core.errors import PREEMPTED_EXIT_CODE


def _output_dir(train_args: list[str]) -> Path | None:
    for i, a in enumerate(train_args):
        if a == "--output" and i + 1 < len(train_args):
            return Path(train_args[i + 1])
        if a.startswith("--output="):
            return Path(a.split("=", 1)[1])
    return None


def preempted_since(output: Path | None, started: float) -> bool:
    if output is None:
        return False
    latest = StageDir(output).latest_checkpoint()
    if latest is None:
        return False
    state = latest / STATE
    if not state.is_file() or state.stat().st_mtime < started:
        return False
    return bool(json.loads(state.read_text()).get("preempted"))


def _torchrun_preexec() -> None:
    """In torchrun's process before exec: ignore SIGUSR1 (see the module doc) and die with this wrapper."""
    from cpt.core.procs import die_with_parent

    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    die_with_parent()


def launch(torchrun_args: list[str], train_args: list[str]) -> int:
    import psutil

    started = time.time()
    cmd = [sys.executable, "-m", "torch.distributed.run", *torchrun_args, "-m", "cpt.train", *train_args]
    proc = subprocess.Popen(cmd, preexec_fn=_torchrun_preexec)
    requested = []

    def forward(signum, frame):
        requested.append(signum)
        try:
            workers = psutil.Process(proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return
        for w in workers:
            try:
                w.send_signal(signal.SIGUSR1)
            except psutil.NoSuchProcess:
                pass

    for sig in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT):
        signal.signal(sig, forward)
    rc = proc.wait()
    if rc != 0 and preempted_since(_output_dir(train_args), started):
        print(f"cpt.launch.torchrun: preempted (signal {requested[:1]}); checkpoint saved; rerun to resume",
              file=sys.stderr)
        return PREEMPTED_EXIT_CODE
    return rc


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        print(__doc__, file=sys.stderr)
        return 2
    i = argv.index("--")
    return launch(argv[:i], argv[i + 1:])


if __name__ == "__main__":
    sys.exit(main())
