"""An experiment config checked as a whole: the schema and cross-section rules (cpt.core.config) plus the rules
that need a box's knowledge, so a whole workflow fails at plan time, before any job runs:
- tokenizer.candidates must be able to yield vocab_size - base pieces (where knowable without reading files; the
  pieces step checks the rest first thing: cpt.tokenizer.capacity);
- evaluate.benchmarks.<name>.format must be a registered format (cpt.evaluate.formats: one module each), and the
  gating probes must name benchmarks of the same point (cpt.evaluate.gating).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from cpt.core import config as core_config
from cpt.core.errors import ConfigError
from cpt.core.schema import SCHEMA
from cpt.evaluate.formats import FORMATS
from cpt.evaluate.gating import probe_problems
from cpt.tokenizer.capacity import static_capacity_problem


def box_problems(config: Mapping[str, Any]) -> list[str]:
    """Problems of a schema-valid config that only the boxes can see (config keys, one line each)."""
    problems = []
    problem = static_capacity_problem(config.get("tokenizer") or {})
    if problem:
        problems.append(problem)
    benchmarks = (config.get("evaluate") or {}).get("benchmarks") or {}
    if benchmarks:
        problems += [f"evaluate.benchmarks.{name}.format: {spec['format']!r} is not one of {', '.join(FORMATS)}"
                     for name, spec in benchmarks.items() if spec["format"] not in FORMATS]
        problems += probe_problems(benchmarks)
    return problems


def validate(config: Mapping[str, Any], schema_path: str | Path = SCHEMA, source: str = "config") -> dict:
    """cpt.core.config.validate, then the boxes' rules; ConfigError names every problem by config key."""
    cfg = core_config.validate(config, schema_path, source)
    problems = box_problems(cfg)
    if problems:
        raise ConfigError("invalid config\n  " + "\n  ".join(f"{source}: config key {p}" for p in problems))
    return cfg


def load(path: str | Path, overrides=(), prefix: str = "") -> dict:
    """Read and validate an experiment config file as a whole (`overrides`: KEY=VALUE strings applied first)."""
    return validate(core_config.read(path, overrides, prefix), source=str(path))
