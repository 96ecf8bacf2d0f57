"""Output directories (and files) of a verb: one writer at a time, and modes that honour the umask.

`writing(paths)` is what every producer of an artifact runs inside: `cpt.cli` around each verb (the verb's output
options are listed in cpt.cli.OUTPUTS), `cpt.workflow.smk.run` around each Snakemake script (the rule's outputs), and the
trainer around its stage directory. It

- takes an exclusive, non-blocking lock per output: `fcntl.flock` on `<parent>/.<name>.cpt-lock`, next to the
  output, since outputs are replaced by rename. A second writer gets `OutputLockedError` naming the output and the
  holder (pid, host, command) at once, before it changes anything, and what became of the holder: alive,
  stopped, or orphaned (alive, but its launcher is gone: it will not finish; stop it). The kernel drops the lock
  when the holder dies, so a crash never leaves a stale lock; the file itself is removed on release. A lock whose
  recorded holder is gone (pid exited or reused) but which is still held (a process it forked kept the file open)
  is taken over with a warning that names the old holder.
- is keyed by the real path of the output: two spellings of one folder (a symlink alias) share one lock.
- is re-entrant in a process and inherited by child processes (the env variable CPT_HELD_LOCKS): a Snakemake
  script that launches torchrun, or `cpt train` that runs the trainer, does not lock itself out.
- on success, gives every file under the outputs the mode the umask asks for (safetensors 0.8 writes 0600
  through a private temp file whatever the umask; colleagues on a shared file system could not read the weights).

flock works on local file systems and on NFSv4/Lustre/GPFS mounts with flock support (Lustre: `-o flock`);
on a mount with `localflock` it only excludes writers on the same node.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import stat
import sys
import time
from pathlib import Path
from typing import Iterable, Iterator

from cpt.core import procs
from cpt.core.errors import OutputLockedError

ENV = "CPT_HELD_LOCKS"
SUFFIX = ".cpt-lock"
_held: dict[str, tuple[int, int]] = {}  # lock file -> (fd, depth) held by this process
log = logging.getLogger(__name__)


def lock_path(output: str | os.PathLike) -> Path:
    """The lock file of an output: next to the output's real path (symlinks resolved), so aliases share it."""
    p = Path(os.path.realpath(output))
    return p.parent / f".{p.name}{SUFFIX}"


def _inherited() -> set[str]:
    return {p for p in os.environ.get(ENV, "").split(os.pathsep) if p}


def _set_env(paths: set[str]) -> None:
    if paths:
        os.environ[ENV] = os.pathsep.join(sorted(paths))
    else:
        os.environ.pop(ENV, None)


def _read_info(fd: int) -> dict:
    try:
        info = json.loads(os.pread(fd, 1 << 16, 0).decode("utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _holder(info: dict) -> str:
    if not info:
        return "another process"
    return (f"pid {info.get('pid')} on {info.get('host')} (`{info.get('command', '?')}`, since "
            f"{info.get('since', '?')})")


def _refusal(output: Path, info: dict, state: str) -> OutputLockedError:
    who, pid = _holder(info), info.get("pid")
    if state == "orphaned":
        what = (f"{who} holds this output's lock, but its launcher (pid {info.get('ppid')}) is gone: an orphaned "
                f"process that will not finish; stop it (kill {pid}) and run again")
    elif state == "stopped":
        what = f"{who} holds this output's lock but is stopped; continue it (kill -CONT {pid}) or stop it"
    else:
        what = f"{who} is writing this output; wait for it to finish (or stop it) and run again"
    return OutputLockedError(f"{output}: {what}; nothing was changed")


def _take_over(lf: Path, fd: int, info: dict) -> None:
    """Remove the lock file `fd` has open (the holder it names is gone) so the next try locks a fresh one. Under a
    lock of the directory, and only when the path still names that file: two writers never both take over."""
    dfd = os.open(lf.parent, os.O_RDONLY)
    try:
        fcntl.flock(dfd, fcntl.LOCK_EX)
        with contextlib.suppress(FileNotFoundError):
            if os.stat(lf).st_ino == os.fstat(fd).st_ino:
                os.unlink(lf)
                log.warning("%s: took over the lock of %s: that process is gone, a process it started still "
                            "held the lock file; check that nothing else writes this output", lf, _holder(info))
    finally:
        os.close(dfd)


def _acquire(output: Path) -> str | None:
    """Lock one output; returns the lock file path it now holds (None when held by this process or a parent)."""
    lf = lock_path(output)
    key = str(lf)
    if key in _held:
        fd, depth = _held[key]
        _held[key] = (fd, depth + 1)
        return key
    if key in _inherited():
        return None
    lf.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lf, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                os.close(fd)
                raise
            info = _read_info(fd)
            state = procs.status(info) if info.get("pid") else "unknown"
            if state == "gone":
                _take_over(lf, fd, info)
                os.close(fd)
                continue
            os.close(fd)
            raise _refusal(output, info, state) from None
        # the holder before us may have unlinked the file after we opened it: then we locked a dead inode
        try:
            same = os.stat(lf).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    info = {**procs.identity(), "command": " ".join(sys.argv)[:300],
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "output": str(output)}
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps(info).encode())
    _held[key] = (fd, 1)
    _set_env(_inherited() | {key})
    return key


def _release(key: str) -> None:
    fd, depth = _held[key]
    if depth > 1:
        _held[key] = (fd, depth - 1)
        return
    del _held[key]
    _set_env(_inherited() - {key})
    with contextlib.suppress(FileNotFoundError):
        os.unlink(key)  # before unlocking: a waiter that opened the old inode sees it is gone and retries
    os.close(fd)


@contextlib.contextmanager
def output_lock(outputs: Iterable[str | os.PathLike] | str | os.PathLike) -> Iterator[list[Path]]:
    """Exclusive locks on the given outputs for the duration of the block (all or none)."""
    paths = [Path(outputs)] if isinstance(outputs, (str, os.PathLike)) else [Path(p) for p in outputs]
    taken: list[str] = []
    try:
        for p in dict.fromkeys(paths):
            key = _acquire(p)
            if key is not None:
                taken.append(key)
        yield paths
    finally:
        for key in reversed(taken):
            _release(key)


def current_umask() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # not thread-safe; only where /proc is missing
    os.umask(mask)
    return mask


def honour_umask(paths: Iterable[str | os.PathLike] | str | os.PathLike) -> int:
    """Give files (0666 & ~umask, execute bits kept) and directories (0777 & ~umask) under `paths` the modes a
    plain open()/mkdir() would have given them; returns how many modes changed. Symlinks are left alone."""
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    mask = current_umask()
    changed = 0

    def fix(p: str, is_dir: bool) -> None:
        nonlocal changed
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(st.st_mode):
            return
        mode = stat.S_IMODE(st.st_mode)
        want = (0o777 if is_dir else 0o666 | (mode & 0o111)) & ~mask
        if mode != want:
            with contextlib.suppress(PermissionError):
                os.chmod(p, want)
                changed += 1

    for root in paths:
        root = os.fspath(root)
        if os.path.isdir(root) and not os.path.islink(root):
            fix(root, True)
            for dirpath, dirnames, filenames in os.walk(root):
                for d in dirnames:
                    fix(os.path.join(dirpath, d), True)
                for f in filenames:
                    fix(os.path.join(dirpath, f), False)
        elif os.path.exists(root):
            fix(root, False)
    return changed


@contextlib.contextmanager
def writing(outputs: Iterable[str | os.PathLike] | str | os.PathLike) -> Iterator[list[Path]]:
    """Lock the outputs while the block writes them; on success give what was written umask modes."""
    with output_lock(outputs) as paths:
        yield paths
        honour_umask(paths)
