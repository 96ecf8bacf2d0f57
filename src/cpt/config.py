"""Experiment config: schema validation (with defaults), the stage chain, and the results/<experiment>/ layout.

The Snakefile validates with `snakemake.utils.validate` (same schema files); this module gives the same check to the
CLI and the tests, with one error per problem that names the config key, and the cross-section checks a JSON schema
cannot express (a stage's `init_from` must name an earlier stage, ...).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Mapping

import yaml

from cpt.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA = REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"
SPECIAL_SOURCES = ("base_model", "init")


def _key_path(error) -> str:
    parts = [str(p) for p in error.absolute_path]
    if error.validator == "additionalProperties":
        # the offending key is in the message: "Additional properties are not allowed ('x' was unexpected)"
        import re

        extra = re.findall(r"'([^']+)'", error.message.split("(")[-1])
        return ".".join(parts + extra[:1]) if extra else ".".join(parts) or "<top level>"
    if error.validator == "required":
        import re

        missing = re.findall(r"'([^']+)' is a required property", error.message)
        return ".".join(parts + missing[:1])
    return ".".join(parts) or "<top level>"


def load_schema(schema_path: str | Path = SCHEMA) -> dict:
    """The config schema with every `$ref: <file>` inlined (so defaults inside section files apply)."""
    schema_path = Path(schema_path)

    def inline(node, base: Path, doc: dict, top: bool):
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                rest = {k: v for k, v in node.items() if k != "$ref"}
                if ref.startswith("#/"):  # a pointer into the current file
                    target = doc
                    for part in ref[2:].split("/"):
                        target = target[part]
                    return {**inline(target, base, doc, False), **inline(rest, base, doc, False)}
                path = base / ref
                sub = yaml.safe_load(path.read_text(encoding="utf-8"))
                sub.pop("$schema", None)
                return {**inline(sub, path.parent, sub, False), **inline(rest, base, doc, False)}
            return {k: inline(v, base, doc, False) for k, v in node.items()
                    if top or k not in ("$schema", "$defs")}
        if isinstance(node, list):
            return [inline(v, base, doc, False) for v in node]
        return node

    root = yaml.safe_load(schema_path.read_text(encoding="utf-8"))
    return inline(root, schema_path.parent, root, True)


def _validator(schema_path: Path):
    import jsonschema

    schema = load_schema(schema_path)
    cls = jsonschema.validators.validator_for(schema)

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if isinstance(sub, dict) and "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from cls.VALIDATORS["properties"](validator, properties, instance, schema)

    return jsonschema.validators.extend(cls, {"properties": set_defaults})(schema)


def validate(config: Mapping[str, Any], schema_path: str | Path = SCHEMA, source: str = "config") -> dict:
    """Validate a config dict, fill in defaults, check cross-section rules; returns the completed copy.

    Raises ConfigError listing every problem as `<source>: key.path: message`.
    """
    cfg = copy.deepcopy(dict(config))
    validator = _validator(Path(schema_path))
    errors = sorted(validator.iter_errors(cfg), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = [f"{source}: config key {_key_path(e)}: {e.message}" for e in errors]
        raise ConfigError("invalid config\n  " + "\n  ".join(lines))
    check_semantics(cfg, source)
    return cfg


def load(path: str | Path) -> dict:
    """Read and validate a config file."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: a config file must be a mapping of sections")
    return validate(data, source=str(p))


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
    from_stage = config.get("model", {}).get("init", {}).get("from_stage")
    if from_stage is not None and from_stage not in stages:
        problems.append(f"model.init.from_stage: {from_stage!r} is not a training stage")
    if from_stage is not None:
        if stage_tokenizer(config, from_stage) != "base":
            problems.append(f"model.init.from_stage: stage {from_stage!r} already uses the extended tokenizer")
    if problems:
        raise ConfigError("invalid config\n  " + "\n  ".join(f"{source}: config key {p}" for p in problems))


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
    seen = set()
    while stage not in SPECIAL_SOURCES:
        if stage in seen:
            raise ConfigError(f"train.stages: init_from forms a cycle at {stage!r}")
        seen.add(stage)
        stage = config["train"]["stages"][stage]["init_from"]
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


def dataset_section(config: Mapping[str, Any], stage: str) -> dict:
    """The dataset settings of one stage: the global dataset keys plus `stage` = dataset.stages.<stage>."""
    ds = {k: copy.deepcopy(v) for k, v in config["dataset"].items() if k != "stages"}
    ds["stage"] = copy.deepcopy(config["dataset"]["stages"][stage])
    ds["name"] = stage
    return ds


def rule_resources(config: Mapping[str, Any], rule: str) -> dict:
    res = dict(config.get("resources", {}).get("default", {}))
    res.update(config.get("resources", {}).get(rule, {}))
    return res


# -------------------------------------------------------------------------------------------------- the layout
class Layout:
    """Every path of one experiment (relative to the working directory), in one place."""

    def __init__(self, config: Mapping[str, Any], root: str | Path = "results"):
        self.config = config
        self.root = Path(root) / config["experiment"]

    def __getattr__(self, name):  # pragma: no cover - helpful message for typos in rules
        raise AttributeError(f"Layout has no path {name!r}")

    # corpus
    @property
    def corpus_raw(self) -> Path:
        return self.root / "corpus" / "raw"

    @property
    def clean(self) -> Path:
        return self.root / "clean"

    @property
    def corpus_train(self) -> Path:
        return self.root / "corpus" / "train"

    @property
    def corpus_heldout(self) -> Path:
        return self.root / "corpus" / "heldout"

    @property
    def corpus_sft(self) -> Path:
        return self.root / "corpus" / "sft"

    # tokenizer
    @property
    def tokenizer_base(self) -> Path:
        return self.root / "tokenizer" / "base"

    @property
    def pieces(self) -> Path:
        return self.root / "tokenizer" / "pieces.jsonl"

    @property
    def tokenizer_extended(self) -> Path:
        return self.root / "tokenizer" / "extended"

    @property
    def compression(self) -> Path:
        return self.root / "tokenizer" / "compression.json"

    def tokenizer(self, kind: str) -> Path:
        return self.tokenizer_base if kind == "base" else self.tokenizer_extended

    # model
    @property
    def model_base(self) -> Path:
        base = self.config["model"]["base"]
        if base.get("kind") == "local":
            return Path(base["path"])
        return self.root / "model" / "base"

    @property
    def model_base_check(self) -> Path:
        """For a user's local base model (read in place): the record that it matches the base tokenizer."""
        return self.root / "model" / "base_check.json"

    @property
    def model_init(self) -> Path:
        return self.root / "model" / "init"

    # dataset / train / evaluate
    def dataset(self, stage: str) -> Path:
        return self.root / "dataset" / stage

    def train(self, stage: str) -> Path:
        return self.root / "train" / stage

    def final(self, stage: str) -> Path:
        return self.train(stage) / "final"

    def model_source(self, source: str) -> Path:
        """The model directory a stage starts from (base_model, init or an earlier stage's final)."""
        if source == "base_model":
            return self.model_base
        if source == "init":
            return self.model_init
        return self.final(source)

    def evaluate(self, point: str) -> Path:
        return self.root / "evaluate" / point

    @property
    def report(self) -> Path:
        return self.root / "report"
