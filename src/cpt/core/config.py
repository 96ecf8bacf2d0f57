"""Experiment config: validation against the schema (cpt.core.schema) with defaults, the cross-section rules, the stage
chain, each step's section, and the results/<experiment>/ layout.

The Snakefile validates with `snakemake.utils.validate` (same schema files); this module gives the same check to the
CLI and the tests, with one error per problem that names the config key, and the cross-section checks a JSON schema
cannot express (a stage's `init_from` must name an earlier stage, ...).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Mapping

from cpt.core.errors import ConfigError
from cpt.core.schema import SCHEMA, apply_overrides, coerce, complete, error_lines, file_validator
from cpt.core.yamlio import read_yaml

SPECIAL_SOURCES = ("base_model", "init")


def validate(config: Mapping[str, Any], schema_path: str | Path = SCHEMA, source: str = "config") -> dict:
    """Validate a config dict, fill in defaults, check cross-section rules; returns the completed copy.

    The rules that need a box's knowledge (the tokenizer's candidate capacity, the registered benchmark formats)
    are added by cpt.workflow.experiment.validate, which the Snakefile and the tests of whole experiments use.

    Raises ConfigError listing every problem as `<source>: key.path: message`.
    """
    validator = file_validator(Path(schema_path))
    cfg = coerce(dict(config), validator.schema)  # a copy; numbers given as strings (Snakemake --config) converted
    errors = sorted(validator.iter_errors(cfg), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        raise ConfigError("invalid config\n  " + "\n  ".join(error_lines(errors, source)))
    check_semantics(cfg, source)
    return cfg


def read(path: str | Path, overrides=(), prefix: str = "") -> dict:
    """A config file as a mapping (strict YAML: a key twice is an error) with KEY=VALUE `overrides` applied (see
    `apply_overrides`); not yet validated."""
    p = Path(path)
    data = read_yaml(p)
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: a config file must be a mapping of sections")
    if overrides:
        data = apply_overrides(data, overrides, prefix)
    return data


def load(path: str | Path, overrides=(), prefix: str = "") -> dict:
    """Read and validate a config file; `overrides`: KEY=VALUE strings (see `apply_overrides`) applied first."""
    return validate(read(path, overrides, prefix), source=str(path))


# ---------------------------------------------------------------------------------------------- the stage chain
def stage_names(config: Mapping[str, Any]) -> list[str]:
    """Training stages in config order."""
    return list(config["train"]["stages"])


def check_semantics(config: Mapping[str, Any], source: str = "config") -> None:
    stages = stage_names(config)
    problems = []
    for i, name in enumerate(stages):
        if name in SPECIAL_SOURCES:
            problems.append(f"train.stages.{name}: '{name}' is reserved; rename the stage")
        src = config["train"]["stages"][name]["init_from"]
        if src not in SPECIAL_SOURCES and src not in stages[:i]:
            problems.append(
                f"train.stages.{name}.init_from: {src!r} is neither base_model, init, nor an earlier stage "
                f"(stages in order: {', '.join(stages)})"
            )
    ds = config.get("dataset", {}).get("stages")
    if ds is not None:
        for name in stages:
            if name not in ds:
                problems.append(f"dataset.stages.{name}: missing (every training stage needs its data)")
        for name in ds:
            if name not in stages:
                problems.append(f"dataset.stages.{name}: no training stage of that name (train.stages)")
    problems += _replay_problems(config, stages)
    from_stage = config.get("model", {}).get("init", {}).get("from_stage")
    if from_stage is not None and from_stage not in stages:
        problems.append(f"model.init.from_stage: {from_stage!r} is not a training stage "
                        f"(stages in order: {', '.join(stages)}; null = LLaMA-2 itself)")
    elif from_stage is not None and not any(p.startswith("train.stages.") for p in problems):
        # the init_from chain is known to end at base_model or init
        if stage_tokenizer(config, from_stage) != "base":
            problems.append(f"model.init.from_stage: stage {from_stage!r} already uses the extended tokenizer")
    exported = ((config.get("export") or {}).get("gguf") or {}).get("stages") or []
    problems += [f"export.gguf.stages: {name!r} is not a training stage (stages in order: {', '.join(stages)})"
                 for name in exported if name not in stages]
    if problems:
        raise ConfigError("invalid config\n  " + "\n  ".join(f"{source}: config key {p}" for p in problems))


def gguf_stages(config: Mapping[str, Any]) -> list[str]:
    """The stages whose GGUF export.gguf asks for: its `stages`, else the last training stage."""
    return list(config["export"]["gguf"].get("stages") or stage_names(config)[-1:])


def _replay_problems(config: Mapping[str, Any], stages: list[str]) -> list[str]:
    """dataset.stages.<s>.replay.from must name earlier training stages."""
    problems = []
    for name, entry in (config.get("dataset", {}).get("stages") or {}).items():
        earlier = stages[:stages.index(name)] if name in stages else []
        for src in replay_from(entry):
            if src == name:
                problems.append(f"dataset.stages.{name}.replay.from: a stage cannot replay from itself; name earlier "
                                f"stages only ({', '.join(earlier) or 'none before it'})")
            elif src not in earlier:
                problems.append(f"dataset.stages.{name}.replay.from: {src!r} is not an earlier training stage "
                                f"(stages in order: {', '.join(stages)})")
    return problems




def check_local_paths(config: Mapping[str, Any], source: str = "config") -> None:
    """The user's own LLaMA-2 model/tokenizer directories must exist before any job runs."""
    problems = []
    for key, section in (("model.base", config.get("model", {}).get("base", {})),
                         ("tokenizer.base", config.get("tokenizer", {}).get("base", {}))):
        if section.get("kind") == "local":
            path = section.get("path")
            if not path or not Path(path).is_dir():
                problems.append(f"{key}.path: {path!r} is not a directory; point it at your local LLaMA-2 Hugging Face "
                                f"directory (tokenizer.model, config.json, safetensors)")
    if problems:
        raise ConfigError("invalid config\n  " + "\n  ".join(f"{source}: config key {p}" for p in problems))


def stage_tokenizer(config: Mapping[str, Any], stage: str) -> str:
    """'base' or 'extended': the tokenizer a stage's data and model use (follows init_from)."""
    stages = config["train"]["stages"]
    key, seen = None, set()
    while stage not in SPECIAL_SOURCES:
        if stage not in stages:
            where = f"train.stages.{key}.init_from" if key else "train.stages"
            raise ConfigError(f"config key {where}: {stage!r} is no training stage (stages in order: "
                              f"{', '.join(stages)}; or base_model, init)")
        if stage in seen:
            raise ConfigError(f"config key train.stages.{stage}.init_from: the init_from chain forms a cycle")
        seen.add(stage)
        key, stage = stage, stages[stage]["init_from"]
    return "base" if stage == "base_model" else "extended"


def stage_section(config: Mapping[str, Any], stage: str) -> dict:
    """The effective training settings of one stage: train.defaults overridden by train.stages.<stage>."""
    merged = copy.deepcopy(config["train"].get("defaults", {}))
    for key, value in config["train"]["stages"][stage].items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = copy.deepcopy(value)
    merged["name"] = stage
    return merged



def dataset_stage(config: Mapping[str, Any], stage: str) -> dict:
    """dataset.stages.<stage> with the schema's defaults (an entry written as null included)."""
    return complete("dataset.stages.*", config["dataset"]["stages"].get(stage))


def replay_from(stage_entry: Mapping[str, Any] | None) -> list[str]:
    """The stages a dataset stage replays from (`replay.from`: one name or a list), in order."""
    frm = ((stage_entry or {}).get("replay") or {}).get("from") or []
    return [frm] if isinstance(frm, str) else list(frm)


def dataset_config(config: Mapping[str, Any], stage: str) -> dict:
    """What the dataset step of one stage is given: the `dataset:` section with only that stage in `stages`
    (so a change to another stage's data does not rerun this one)."""
    ds = {k: copy.deepcopy(v) for k, v in config["dataset"].items() if k != "stages"}
    ds["stages"] = {stage: copy.deepcopy(config["dataset"]["stages"][stage])}
    return ds
