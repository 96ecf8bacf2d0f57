"""Processes: who they are (pid + start time + boot: a pid alone is reused) and dying with their launcher.

`identity(pid)` is what a lock file records about its holder, so a later writer can tell a live holder from a gone
one (the pid exited, or now belongs to another process), and a live one whose launcher is gone (an orphan: its
parent changed). `die_with_parent()` asks the kernel (prctl PR_SET_PDEATHSIG) to kill the calling process when the
thread that started it exits: the rank processes of a run and torchrun itself call it, so a kill -9 of the launcher
ends the whole tree instead of leaving ranks alive in their own sessions.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
from pathlib import Path

PR_SET_PDEATHSIG = 1


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state is [0], ppid [1], start time [19])."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    return text[text.rfind(")") + 2:].split()


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
    except OSError:
        return ""


def identity(pid: int | None = None) -> dict:
    """{"pid", "ppid", "start", "host", "boot"} of a process (this one by default); start = clock ticks since boot."""
    pid = os.getpid() if pid is None else pid
    fields = _stat_fields(pid) or []
    return {"pid": pid, "ppid": int(fields[1]) if fields else None, "start": int(fields[19]) if fields else None,
            "host": socket.gethostname(), "boot": boot_id()}


def status(ident: dict) -> str:
    """What became of the process `ident` (from `identity`) describes: "alive", "gone" (exited, or its pid now
    names another process), "orphaned" (alive, but its parent changed: its launcher is gone), "stopped" (state T),
    or "unknown" (another host, or no /proc)."""
    if ident.get("host") != socket.gethostname() or not ident.get("pid"):
        return "unknown"
    if ident.get("boot") and ident.get("boot") != boot_id():
        return "gone"
    fields = _stat_fields(int(ident["pid"]))
    if fields is None:
        return "gone" if Path("/proc/self/stat").exists() else "unknown"
    if ident.get("start") is not None and int(fields[19]) != int(ident["start"]):
        return "gone"
    if fields[0] in ("Z", "X"):
        return "gone"
    if fields[0] in ("T", "t"):
        return "stopped"
    if ident.get("ppid") is not None and int(fields[1]) != int(ident["ppid"]):
        return "orphaned"
    return "alive"


def die_with_parent(sig: int = signal.SIGKILL) -> bool:
    """Have the kernel send `sig` to this process when its parent exits (Linux); True when set. Usable as a
    `preexec_fn`. When the parent is already gone (reparented to init) the process is killed at once."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() == 1:  # the parent died before the request: nobody will send the signal
        os.kill(os.getpid(), sig)
    return True
