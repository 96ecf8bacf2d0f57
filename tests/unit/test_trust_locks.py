"""Attacks on the output lock (issue 24, item 5 and the lock half of item 1): a symlink alias shares the lock, a
hung (orphaned) holder is named as such, a lock still held after its holder is gone is taken over with a warning."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cpt.core import locks, procs
from cpt.core.errors import OutputLockedError

REPO = Path(__file__).resolve().parents[2]
ENV = {**{k: v for k, v in os.environ.items() if k != locks.ENV}, "PYTHONPATH": str(REPO / "src")}

HOLD = """
import sys
from cpt.core.locks import output_lock
with output_lock([sys.argv[1]]):
    print("held", flush=True)
    sys.stdin.read()
"""
HOLD_HUNG = """
import signal, sys
from cpt.core.locks import output_lock
with output_lock([sys.argv[1]]):
    print("held", flush=True)
    signal.pause()
"""
# starts a holder in its own session, then exits: the holder lives on, orphaned (as ranks did after kill -9)
ORPHAN = """
import subprocess, sys
h = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]], stdin=subprocess.DEVNULL,
                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
assert h.stdout.readline().strip() == "held"
print(h.pid, flush=True)
"""
# takes the lock, forks a child that inherits the open lock file, and exits without releasing
FORK = """
import os, sys
from cpt.core.locks import output_lock
with output_lock([sys.argv[1]]):
    if os.fork() == 0:
        print("child", os.getpid(), flush=True)
        sys.stdin.read()
        os._exit(0)
    os._exit(0)
"""


def test_a_symlink_alias_shares_the_lock(tmp_path):
    real = tmp_path / "results" / "stage"
    real.mkdir(parents=True)
    (tmp_path / "alias").symlink_to(tmp_path / "results")
    h = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "alias" / "stage")], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert h.stdout.readline().strip() == "held"
        assert locks.lock_path(tmp_path / "alias" / "stage") == locks.lock_path(real)
        with pytest.raises(OutputLockedError, match=rf"{real}: pid {h.pid} on .* is writing this output"):
            with locks.output_lock([real]):
                pass
    finally:
        h.communicate("")
    with locks.output_lock([real]):  # released when the holder finished
        pass


def test_an_orphaned_holder_is_named_as_such(tmp_path):
    out = tmp_path / "stage"
    launcher = subprocess.run([sys.executable, "-c", ORPHAN, HOLD_HUNG, str(out)], capture_output=True, text=True,
                              env=ENV, check=True)
    pid = int(launcher.stdout.strip())
    try:
        with pytest.raises(OutputLockedError, match=rf"pid {pid} .* holds this output's lock, but its launcher "
                                                    rf"\(pid \d+\) is gone: an orphaned process that will not "
                                                    rf"finish; stop it \(kill {pid}\)"):
            with locks.output_lock([out]):
                pass
    finally:
        os.kill(pid, signal.SIGKILL)


def test_a_lock_held_after_its_holder_is_gone_is_taken_over(tmp_path, caplog):
    out = tmp_path / "stage"
    p = subprocess.Popen([sys.executable, "-c", FORK, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True, env=ENV)
    word, child = p.stdout.readline().split()
    assert word == "child" and p.wait() == 0  # the holder is gone; its forked child still has the lock file open
    try:
        with caplog.at_level(logging.WARNING, logger="cpt.core.locks"):
            with locks.output_lock([out]):
                assert procs.status({**procs.identity(p.pid), "start": -1}) == "gone"
        assert f"took over the lock of pid {p.pid} " in caplog.text
    finally:
        p.stdin.close()  # the child reads EOF and exits
    assert procs.status(procs.identity()) == "alive"
