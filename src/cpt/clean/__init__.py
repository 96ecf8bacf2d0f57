"""Corpus cleaning: normalisation, Chinese-aware filters, exact + near dedup, quality scores, a report.

Library: ``run_clean`` (one machine), or ``prepare`` (per category/shard) + ``finalize`` (one job) — see
pipeline.py for the data flow and how the stage runs on a cluster. CLI: ``cpt clean`` (cpt.clean.cli).
"""

from __future__ import annotations

from cpt.clean.pipeline import REASON_ORDER, finalize, prepare, run_clean
from cpt.clean.settings import resolve_section

__all__ = ["REASON_ORDER", "finalize", "prepare", "resolve_section", "run_clean"]
