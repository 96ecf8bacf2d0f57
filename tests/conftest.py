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
# its tests run on one worker and share the fixture. The groups of the long workflow and distributed modules are
# handed out first, so the other worker fills in with short tests instead of waiting for a long tail at the end.
HEAVY_FIRST = ("tests/workflow/", "tests/distributed/")


def _module_scoped(item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    return info is not None and any(d.scope == "module" for defs in info.name2fixturedefs.values() for d in defs)


@pytest.hookimpl(tryfirst=True)  # before xdist's worker reads the groups
def pytest_collection_modifyitems(config, items):
    grouped = set()
    for item in items:
        if _module_scoped(item):
            grouped.add(item.nodeid.split("::", 1)[0])
            if getattr(config.option, "loadgroup", False):  # an xdist worker: the group is the suffix "@<name>" of the node id,
                # which xdist 3.8 writes to `_nodeid` while pytest 9 reads `_id`: write it where pytest reads it
                item._id = coerce_node_id(f"{item.nodeid}@{item.module.__name__}")
    rel = {id(i): Path(str(i.fspath)).relative_to(REPO).as_posix() if Path(str(i.fspath)).is_relative_to(REPO)
           else str(i.fspath) for i in items}
    items.sort(key=lambda i: not (rel[id(i)].startswith(HEAVY_FIRST) and i.nodeid.split("::", 1)[0] in grouped))
