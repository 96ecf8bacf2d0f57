"""Which rank is hung or gone when a collective fails, and on which node.

A blocked collective only tells the ranks that wait in it that *someone* did not come (gloo: "Timed out waiting
... for recv", or "Connection closed by peer" when a node died); the hung process itself prints nothing. So every
rank of a multi-process run registers its host name and pid in the run's rendezvous store (the TCPStore that
torchrun's agent on the first node serves: MASTER_ADDR:MASTER_PORT) and bumps a heartbeat counter there every
HEARTBEAT_S seconds from a daemon thread. A rank whose collective failed reads the counters twice, CHECK_S
seconds apart: ranks whose counter did not move are not running -- stopped (SIGSTOP, a hung node), killed, or on
a node that is gone -- and the error names them with their host and pid. When every heartbeat moves (a rank
hung in its own code while its threads run), the ranks that did not report the failure themselves are named.
Best effort: any error talking to the store leaves the message without names.
"""

from __future__ import annotations

import atexit
import datetime
import json
import os
import socket
import threading
import time

HEARTBEAT_S = 1.0
CHECK_S = 3.0           # > 2 heartbeats: a running rank's counter moves in that time
STORE_TIMEOUT_S = 10
_PREFIX = "cpt/peers/"
_RUN: dict = {}


def _connect(timeout_s: float = STORE_TIMEOUT_S):
    import torch.distributed as dist

    return dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False,
                         timeout=datetime.timedelta(seconds=timeout_s))


def start(rank: int, world: int) -> bool:
    """Register this rank (host, pid) and start its heartbeat; a no-op for a world of one. Returns whether it
    runs."""
    if world < 2 or not os.environ.get("MASTER_ADDR") or not os.environ.get("MASTER_PORT") or _RUN:
        return False
    try:
        store, beat_store = _connect(), _connect()
        store.set(f"{_PREFIX}host/{rank}", json.dumps({"host": socket.gethostname().split(".")[0],
                                                        "pid": os.getpid()}))
    except Exception:  # noqa: BLE001 -- diagnostics only: training goes on without names in errors
        return False
    stopped = threading.Event()

    def beat():
        n = 0
        while not stopped.is_set():
            n += 1
            try:
                beat_store.set(f"{_PREFIX}beat/{rank}", str(n))
            except Exception:  # noqa: BLE001 -- the store is gone (its node): nothing left to tell
                return
            stopped.wait(HEARTBEAT_S)

    thread = threading.Thread(target=beat, name="cpt-heartbeat", daemon=True)
    _RUN.update(rank=rank, world=world, store=store, stopped=stopped, thread=thread)
    thread.start()
    atexit.register(stop)
    return True


def stop() -> None:
    """End the heartbeat and wait for its thread (at the end of training and at exit): a thread still inside a
    store call while the interpreter tears the stores down aborts the process (SIGABRT, "terminate called
    without an active exception")."""
    if not _RUN:
        return
    _RUN["stopped"].set()
    _RUN["thread"].join(timeout=STORE_TIMEOUT_S + HEARTBEAT_S)
    _RUN.clear()


def _read(store, key: str) -> str | None:
    return store.get(key).decode() if store.check([key]) else None


def _who(store, ranks: list[int]) -> str:
    """'rank 3 on node2 (pid 4711)' / 'ranks 2, 3 on node2 (pids 17, 18)', grouped by host."""
    by_host: dict[str, list[tuple[int, str]]] = {}
    for r in ranks:
        info = json.loads(_read(store, f"{_PREFIX}host/{r}") or "{}")
        by_host.setdefault(info.get("host", "an unknown host"), []).append((r, str(info.get("pid", "?"))))
    parts = []
    for host, items in by_host.items():
        if len(items) == 1:
            parts.append(f"rank {items[0][0]} on {host} (pid {items[0][1]})")
        else:
            parts.append(f"ranks {', '.join(str(r) for r, _ in items)} on {host} "
                         f"(pids {', '.join(p for _, p in items)})")
    return "; ".join(parts)


def absent_peers(check_s: float = CHECK_S) -> str | None:
    """After this rank's collective failed: which other ranks are not running (heartbeat stopped), else which did
    not report the failure; a sentence naming rank, host and pid, or None (no registry, nothing found)."""
    if not _RUN:
        return None
    rank, world = _RUN["rank"], _RUN["world"]
    try:
        store = _connect()
        store.set(f"{_PREFIX}failed/{rank}", "1")
        others = [r for r in range(world) if r != rank]
        before = {r: _read(store, f"{_PREFIX}beat/{r}") for r in others}
        time.sleep(check_s)
        after = {r: _read(store, f"{_PREFIX}beat/{r}") for r in others}
        stopped = [r for r in others if after[r] == before[r]]
        if stopped:
            return (f"{_who(store, stopped)} {'is' if len(stopped) == 1 else 'are'} not running: no heartbeat for "
                    f"{check_s:g} s (stopped, killed, or the node is gone)")
        silent = [r for r in others if not store.check([f"{_PREFIX}failed/{r}"])]
        if silent:
            return (f"{_who(store, silent)} did not reach the failed collective: hung in its own code (its "
                    f"heartbeat runs)")
    except Exception:  # noqa: BLE001 -- the store's node may be the one that is gone
        return None
    return None
