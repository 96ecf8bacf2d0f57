"""Experiment config: schema validation (with defaults), the stage chain, and the results/<experiment>/ layout.

The Snakefile validates with `snakemake.utils.validate` (same schema files); this module gives the same check to the
CLI and the tests, with one error per problem that names the config key, and the cross-section checks a JSON schema
cannot express (a stage's `init_from` must name an earlier stage, ...).
"""

from __future__ import annotations

import copy
import functools
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


def _error_lines(errors, source: str, prefix: str = "") -> list[str]:
    """One line per schema error: `<source>: config key <key path>: <message>`. For a value that matches none of
    a `oneOf`'s alternatives, the message of the alternative it came closest to (e.g. the unexpected key)."""
    lines = []
    for e in errors:
        while e.context:  # a oneOf/anyOf: follow the alternative that got deepest into the value, if any did
            deepest = max(e.context, key=lambda c: len(c.relative_path))
            if not deepest.relative_path:
                break
            e = deepest
        key = _key_path(e)
        key = f"{prefix}.{key}" if prefix and key != "<top level>" else (prefix or key)
        lines.append(f"{source}: config key {key}: {e.message}")
    return lines


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


def _validator_for(schema: dict):
    """A jsonschema validator of `schema` that fills in every `default` it passes (objects included)."""
    import jsonschema

    cls = jsonschema.validators.validator_for(schema)

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if isinstance(sub, dict) and "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from cls.VALIDATORS["properties"](validator, properties, instance, schema)

    return jsonschema.validators.extend(cls, {"properties": set_defaults})(schema)


def _validator(schema_path: Path):
    return _validator_for(load_schema(schema_path))


def validate(config: Mapping[str, Any], schema_path: str | Path = SCHEMA, source: str = "config") -> dict:
    """Validate a config dict, fill in defaults, check cross-section rules; returns the completed copy.

    Raises ConfigError listing every problem as `<source>: key.path: message`.
    """
    validator = _validator(Path(schema_path))
    cfg = coerce(dict(config), validator.schema)  # a copy; numbers given as strings (Snakemake --config) converted
    errors = sorted(validator.iter_errors(cfg), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        raise ConfigError("invalid config\n  " + "\n  ".join(_error_lines(errors, source)))
    check_semantics(cfg, source)
    return cfg


def load(path: str | Path, overrides=(), prefix: str = "") -> dict:
    """Read and validate a config file; `overrides`: KEY=VALUE strings (see `apply_overrides`) applied first."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: a config file must be a mapping of sections")
    if overrides:
        data = apply_overrides(data, overrides, prefix)
    return validate(data, source=str(p))


# ------------------------------------------------------------------------------- one section: schema defaults
# The schema is the only place a default or a validation rule of a config key is written. The library's entry
# points complete the section they are given with `complete` (a no-op on a section that came through `validate`),
# so a caller that passes a partial section (the CLI, a test, a notebook) gets the same defaults as the workflow.

@functools.lru_cache(maxsize=None)
def _schema() -> dict:
    return load_schema(SCHEMA)


def subschema(key: str) -> dict:
    """The schema of config key `key`: a dotted path such as "dataset", "model.init" or "dataset.stages.*"
    (`*` = any entry of a mapping). Raises ConfigError for a key the schema does not have."""
    node = _schema()
    for part in key.split("."):
        parts = [node, *node.get("allOf", [])]
        if part == "*":
            found = next((s["additionalProperties"] for s in parts
                          if isinstance(s.get("additionalProperties"), dict)), None)
        else:
            found = next((s["properties"][part] for s in parts if part in (s.get("properties") or {})), None)
        if found is None:
            raise ConfigError(f"config key {key}: not in the schema (workflow/schemas/)")
        node = found
    return node


@functools.lru_cache(maxsize=None)
def _section_validator(key: str):
    return _validator_for(subschema(key))


def complete(key: str, value: Mapping[str, Any] | None = None, source: str = "config",
             label: str | None = None) -> dict:
    """`value` (the config section at `key`, e.g. "model.init"; None = empty) validated against its schema, with
    every default filled in; a new copy. Raises ConfigError listing every problem by its full key (written with
    `label` in place of `key` when given: a stage's training section is checked as train.defaults, named train)."""
    section = coerce(dict(value or {}), subschema(key))  # a copy
    errors = sorted(_section_validator(key).iter_errors(section), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        raise ConfigError("invalid config\n  " + "\n  ".join(_error_lines(errors, source, label or key)))
    return section


_SCALARS = {"null": None, "~": None, "true": True, "false": False}


def _from_string(text: str, types: list[str]):
    """`text` as the first of the schema's scalar `types` it spells, else the text itself."""
    low = text.strip().lower()
    for typ in types:
        try:
            if typ == "null" and low in ("null", "~", "none", ""):
                return None
            if typ == "boolean" and low in ("true", "false"):
                return _SCALARS[low]
            if typ == "integer" and int(text) is not None:
                return int(text)
            if typ == "number":
                return float(text) if any(c in low for c in ".en") else int(text)
        except ValueError:
            continue
    return text


def _parts(schema: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """A schema and the schemas its allOf (nested) adds."""
    out = [schema]
    for s in schema.get("allOf", []):
        out.extend(_parts(s))
    return out


def coerce(value: Any, schema: Mapping[str, Any] | None = None) -> Any:
    """A copy of `value` in which every string that the schema types as a number, integer, boolean or null is
    converted (e.g. "256" -> 256, "1e-4" -> 0.0001, "true" -> True). Snakemake's nested `--config` values and YAML
    1.1's `1e-4` arrive as strings; a string that does not spell such a value is left for validation to report."""
    schema = _schema() if schema is None else schema
    parts = _parts(schema)
    if isinstance(value, str):
        types = next((s["type"] for s in parts if "type" in s), None)
        types = [types] if isinstance(types, str) else list(types or [])
        if "string" in types or not types:
            return value
        return _from_string(value, [t for t in ("null", "boolean", "integer", "number") if t in types])
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            subs = [s["properties"][k] for s in parts if k in (s.get("properties") or {})]
            if not subs:
                subs = [s["additionalProperties"] for s in parts if isinstance(s.get("additionalProperties"), dict)]
            out[k] = coerce(v, {"allOf": subs}) if subs else copy.deepcopy(v)
        return out
    if isinstance(value, list):
        items = next((s["items"] for s in parts if isinstance(s.get("items"), dict)), None)
        return [coerce(v, items) if items is not None else copy.deepcopy(v) for v in value]
    return copy.deepcopy(value)


def apply_overrides(config: Mapping[str, Any], items, prefix: str = "", schema_key: str | None = None,
                    option: str = "--set") -> dict:
    """A copy of `config` with `KEY=VALUE` overrides applied, VALUE parsed as YAML and then with the schema's types.

    `config` is a whole experiment config (KEY a dotted key from the top; `prefix`, e.g. "dataset", is added when
    KEY does not start with a section name), or, with `schema_key`, the section at that key (KEY relative to it; a leading `prefix` is
    dropped: `cpt train --set train.lr=...` and `--set lr=...` are the same)."""
    import yaml

    out = copy.deepcopy(dict(config))
    pre = [p for p in prefix.split(".") if p]
    for key, value in parse_pairs(items, option, "KEY=VALUE").items():
        path = [p for p in key.split(".") if p]
        if schema_key is not None:
            path = path[len(pre):] if path[:len(pre)] == pre and len(path) > len(pre) else path
        elif path[0] not in _schema()["properties"]:
            path = pre + path
        node = out
        for i, part in enumerate(path[:-1]):
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
            if not isinstance(node, dict):
                raise ConfigError(f"{option} {key}={value}: config key {'.'.join(path[:i + 1])} is not a mapping")
        try:
            node[path[-1]] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{option} {key}={value}: not a YAML value ({exc})") from None
    return coerce(out, subschema(schema_key) if schema_key else None)


def parse_pairs(items, option: str, expected: str = "KEY=VALUE", multi: bool = False) -> dict:
    """Repeated `OPTION KEY=VALUE` values -> {KEY: VALUE} (strings; a later KEY wins), or with `multi`
    {KEY: [VALUE, ...]} in order. A value without '=', or with an empty KEY or VALUE, is a ConfigError naming the
    option and the expected form."""
    out: dict = {}
    for item in items or ():
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip() or (multi and not value):
            raise ConfigError(f"{option} {item!r}: expected {expected}")
        if multi:
            out.setdefault(key.strip(), []).append(value)
        else:
            out[key.strip()] = value
    return out


def default(key: str) -> Any:
    """The schema's default of one config key (e.g. "dataset.max_length"); for an object, its completed defaults."""
    sub = subschema(key)
    if sub.get("type") == "object" or "properties" in sub:
        return complete(key, copy.deepcopy(sub.get("default", {})))
    if "default" not in sub:
        raise ConfigError(f"config key {key}: the schema gives it no default")
    return copy.deepcopy(sub["default"])


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
    problems += _format_problems(config)
    from_stage = config.get("model", {}).get("init", {}).get("from_stage")
    if from_stage is not None and from_stage not in stages:
        problems.append(f"model.init.from_stage: {from_stage!r} is not a training stage")
    if from_stage is not None:
        if stage_tokenizer(config, from_stage) != "base":
            problems.append(f"model.init.from_stage: stage {from_stage!r} already uses the extended tokenizer")
    if problems:
        raise ConfigError("invalid config\n  " + "\n  ".join(f"{source}: config key {p}" for p in problems))


def _replay_problems(config: Mapping[str, Any], stages: list[str]) -> list[str]:
    """dataset.stages.<s>.replay.from must name earlier training stages."""
    problems = []
    for name, entry in (config.get("dataset", {}).get("stages") or {}).items():
        earlier = stages[:stages.index(name)] if name in stages else []
        for src in replay_from(entry):
            if src not in earlier:
                problems.append(f"dataset.stages.{name}.replay.from: {src!r} is not an earlier training stage "
                                f"(stages in order: {', '.join(stages)})")
    return problems


def _format_problems(config: Mapping[str, Any]) -> list[str]:
    """evaluate.benchmarks.<name>.format must be a registered format (cpt.evaluate.formats: one module each)."""
    benchmarks = (config.get("evaluate") or {}).get("benchmarks") or {}
    if not benchmarks:
        return []
    from cpt.evaluate.formats import FORMATS

    return [f"evaluate.benchmarks.{name}.format: {spec['format']!r} is not one of {', '.join(FORMATS)}"
            for name, spec in benchmarks.items() if spec["format"] not in FORMATS]


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


def category_languages(config: Mapping[str, Any]) -> dict[str, str]:
    """category -> "zh" | "en": corpus.categories.<name>.lang (what every step that needs a language reads)."""
    return {name: c["lang"] for name, c in config["corpus"]["categories"].items()}


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
