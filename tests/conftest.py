"""Shared fixtures. Real components only: real archives from data/downloads (install.sh), real tokenizers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _pytest.nodeid import coerce_node_id

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


# Under `pytest -n 2` xdist hands tests out one chunk at a time, so the tests of one module can land on both
# workers and a module-scoped fixture (a whole workflow run, torchrun reference runs) is then built twice. Every
# module with a module-scoped fixture becomes one xdist group (run with `--dist loadgroup`, pyproject addopts):
# its tests run on one worker and share the fixture. Longest first: the workflow runs and the groups of the
# distributed modules, then the other `slow` tests, then the rest, so the short tests fill in at the end instead of one long
# test running alone on one worker while the other waits.
HEAVY_FIRST = ("tests/workflow/", "tests/distributed/", "tests/slurm/")
# single tests as long as a workflow run, outside tests/workflow/: first with them (the locked 7B smoke through the
# SLURM profile on the 2-node cluster)
LONGEST = ("tests/slurm/test_slurm_locked_multinode.py",)


def _module_scoped(item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    return info is not None and any(d.scope == "module" for defs in info.name2fixturedefs.values() for d in defs)


def _rank(item, grouped: set) -> int:
    path = item.nodeid.split("::", 1)[0]
    if path.startswith(HEAVY_FIRST[0]) or path in LONGEST or (path in grouped and path.startswith(HEAVY_FIRST)):
        return 0
    return 1 if item.get_closest_marker("slow") else 2


@pytest.hookimpl(tryfirst=True)  # before xdist's worker reads the groups
def pytest_collection_modifyitems(config, items):
    in_worker = getattr(config.option, "loadgroup", False)  # set in xdist workers only
    grouped = set()
    for item in items:
        # the tests on the N-node SLURM cluster share its nodes, and some lose a node on purpose: one worker runs
        # them one after another
        group = ("slurm_multinode" if "slurm_multinode" in getattr(item, "fixturenames", ())
                 else item.module.__name__ if _module_scoped(item) else None)
        if group:
            grouped.add(item.nodeid.split("::", 1)[0])
            if in_worker:  # the group is the suffix "@<name>" of the node id, which xdist 3.8 writes to `_nodeid`
                # while pytest 9 reads `_id`: write it where pytest reads it
                item._id = coerce_node_id(f"{item.nodeid}@{group}")
    items.sort(key=lambda i: _rank(i, grouped))
