"""Reading YAML files strictly: a key given twice in one mapping is an error naming the file, the line and the key
path (plain `yaml.safe_load` keeps the last one silently). Every config-like file the project reads goes through
`read_yaml` (experiment configs, overlays, schemas, data/sources.yaml)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from cpt.core.errors import ConfigError


def _duplicates(node, path: tuple = ()) -> list[str]:
    """Problems `<line>: config key <key path>: given twice (first at line <n>) ...` in a composed YAML node tree."""
    problems = []
    if isinstance(node, yaml.MappingNode):
        seen: dict = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            here = (*path, str(key))
            if key is not None and key != "<<":
                if key in seen:
                    problems.append(f"{key_node.start_mark.line + 1}: config key {'.'.join(here)}: given twice "
                                    f"(first at line {seen[key]}); the last one would silently win, keep one")
                else:
                    seen[key] = key_node.start_mark.line + 1
            problems += _duplicates(value_node, here)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            problems += _duplicates(item, (*path, str(i)))
    return problems


def loads(text: str, source: str = "<string>") -> Any:
    """Parse YAML text; ConfigError (naming `source`, line and key) on invalid YAML or a duplicate key."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    problems = _duplicates(node) if node is not None else []
    if problems:
        raise ConfigError(f"{source}: duplicate key(s)\n  " + "\n  ".join(f"{source}:{p}" for p in problems))
    return data


def read_yaml(path: str | Path) -> Any:
    """`loads` of a file (ConfigError when it is missing)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: file not found") from None
    return loads(text, str(p))
