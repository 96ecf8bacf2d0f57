"""Glue for workflow/scripts/*.py: logging into the rule's log file, config section handling, timing.

A script is three lines:
    from cpt.workflow.smk import run
    from cpt.tokenizer import build_base
    run(snakemake, lambda s: build_base(s.params.section, s.output[0]))
"""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback
from pathlib import Path


def plain(obj):
    """Snakemake params/config objects -> plain dicts/lists (JSON-serialisable, hashable by provenance)."""
    if isinstance(obj, dict) or hasattr(obj, "items"):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj


def setup_logging(logfile: str | os.PathLike | None, level=logging.INFO):
    handlers = [logging.StreamHandler(sys.stderr)]
    if logfile:
        Path(logfile).parent.mkdir(parents=True, exist_ok=True)
        open(logfile, "w").close()  # a fresh log per run; then appends, so child processes can add lines
        handlers.append(logging.FileHandler(logfile, mode="a", encoding="utf-8"))
        os.environ["CPT_LOG_FILE"] = str(Path(logfile).resolve())  # the trainer's rank 0 appends its output
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s", handlers=handlers,
                        force=True)


def run(snakemake, func):
    """Run func(snakemake) with logging to the rule's log; exceptions are logged in full, then re-raised.

    The rule's outputs are locked while it runs and get umask modes at the end (cpt.core.locks.writing), like the
    outputs of every `cpt` verb."""
    from cpt.core.errors import describe
    from cpt.core.locks import writing

    logfile = snakemake.log[0] if len(snakemake.log) else None
    setup_logging(logfile)
    threads = int(getattr(snakemake, "threads", 1) or 1)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true" if threads > 1 else "false")
    log = logging.getLogger(f"cpt.rule.{snakemake.rule}")
    t0 = time.time()
    try:
        with writing([str(o) for o in snakemake.output]):
            result = func(snakemake)
    except Exception as exc:
        log.error("rule %s failed: %s\n%s", snakemake.rule, describe(exc), traceback.format_exc())
        raise
    log.info("rule %s done in %.1f s", snakemake.rule, time.time() - t0)
    return result
