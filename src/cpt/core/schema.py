"""The config schema (workflow/schemas/*.yaml, one file per section): the only place a config key's type, range
and default are written. Loading it, validating a section against it with its defaults filled in (`complete`,
`default`), converting values given as strings with its types (`coerce`: Snakemake's nested --config, YAML 1.1's
1e-4), and KEY=VALUE overrides (`apply_overrides`, `parse_pairs`: --set, and every other KEY=VALUE option).

The library's entry points complete the section they are given with `complete` (a no-op on a section that came
through cpt.core.config.validate), so a caller that passes a partial section (the CLI, a test, a notebook) gets the
same defaults as the workflow.
"""

from __future__ import annotations

import copy
import functools
import math
import re
from pathlib import Path
from typing import Any, Mapping

import yaml

from cpt.core.errors import ConfigError
from cpt.core.shipped import REPO_ROOT, shipped_path  # noqa: F401 (REPO_ROOT: importers use it)
from cpt.core.yamlio import read_yaml

SCHEMA = shipped_path("workflow/schemas") / "config.schema.yaml"


def _key_path(error) -> str:
    parts = [str(p) for p in error.absolute_path]
    if error.validator == "additionalProperties":
        # the offending key is in the message: "Additional properties are not allowed ('x' was unexpected)"
        extra = re.findall(r"'([^']+)'", error.message.split("(")[-1])
        return ".".join(parts + extra[:1]) if extra else ".".join(parts) or "<top level>"
    if error.validator == "required":
        missing = re.findall(r"'([^']+)' is a required property", error.message)
        return ".".join(parts + missing[:1])
    return ".".join(parts) or "<top level>"


def error_lines(errors, source: str, prefix: str = "") -> list[str]:
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
                sub = read_yaml(path)
                sub.pop("$schema", None)
                return {**inline(sub, path.parent, sub, False), **inline(rest, base, doc, False)}
            return {k: inline(v, base, doc, False) for k, v in node.items()
                    if top or k not in ("$schema", "$defs")}
        if isinstance(node, list):
            return [inline(v, base, doc, False) for v in node]
        return node

    root = read_yaml(schema_path)
    return inline(root, schema_path.parent, root, True)


def _validator_for(schema: dict):
    """A jsonschema validator of `schema` that fills in every `default` it passes (objects included) and refuses
    non-finite numbers (`.nan`, `.inf`, "nan" from --set: JSON schema's "number" admits them) wherever the schema
    gives a type, so they never reach torch."""
    import jsonschema

    cls = jsonschema.validators.validator_for(schema)

    def finite_type(validator, types, instance, schema):
        yield from cls.VALIDATORS["type"](validator, types, instance, schema)
        if isinstance(instance, float) and not math.isfinite(instance):
            yield jsonschema.ValidationError(f"{instance!r} is not a finite number; give a finite value")

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if isinstance(sub, dict) and "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from cls.VALIDATORS["properties"](validator, properties, instance, schema)

    return jsonschema.validators.extend(cls, {"properties": set_defaults, "type": finite_type})(schema)


def file_validator(schema_path: Path):
    """The defaults-filling validator of a schema file (its $refs inlined)."""
    return _validator_for(load_schema(schema_path))


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
        raise ConfigError("invalid config\n  " + "\n  ".join(error_lines(errors, source, label or key)))
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
