"""Reading YAML files strictly: a key given twice in one mapping is an error naming the file, the line and the key
path (plain `yaml.safe_load` keeps the last one silently). Every config-like file the project reads goes through
`read_yaml` (experiment configs, overlays, schemas, data/sources.yaml).

Also refused, before anything is built from the file: aliases that expand to more than `MAX_NODES` nodes (a
"billion laughs" alias bomb: each level refers to the one before it several times; walking it once per reference
takes days) and YTE template markers (`__use_yte__`: Snakemake would evaluate the file's templates, i.e. arbitrary
Python, when it loads it; see docs/trust.md). The checks walk every node once (shared alias nodes are memoised)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from cpt.core.errors import ConfigError

MAX_NODES = 100_000  # nodes of the document with every alias expanded; the locked configs have a few thousand
YTE_MARKER = "__use_yte__"


def _expanded_size(node, memo: dict, source: str) -> int:
    """Nodes of `node` with aliases expanded (each shared node computed once); ConfigError past MAX_NODES."""
    if id(node) in memo:
        return memo[id(node)]
    memo[id(node)] = 1  # a recursive alias (`&a [*a]`) counts once instead of looping
    size = 1
    if isinstance(node, yaml.MappingNode):
        size += sum(_expanded_size(k, memo, source) + _expanded_size(v, memo, source) for k, v in node.value)
    elif isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(item, memo, source) for item in node.value)
    if size > MAX_NODES:
        raise ConfigError(f"{source}:{node.start_mark.line + 1}: this value expands to more than {MAX_NODES} nodes "
                          f"through YAML aliases (an alias bomb?); write the values out instead of aliasing them")
    memo[id(node)] = size
    return size


def _problems(node, path: tuple = (), seen_nodes: set | None = None) -> list[str]:
    """Problems `<line>: config key <key path>: ...` (a key given twice, a YTE marker) in a composed YAML node
    tree; a node reached again through an alias is not walked again."""
    seen_nodes = set() if seen_nodes is None else seen_nodes
    if id(node) in seen_nodes:
        return []
    seen_nodes.add(id(node))
    problems = []
    if isinstance(node, yaml.MappingNode):
        seen: dict = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            here = (*path, str(key))
            if key == YTE_MARKER:
                problems.append(f"{key_node.start_mark.line + 1}: config key {'.'.join(here)}: YTE templates are "
                                f"not accepted (Snakemake would run the file's Python expressions when it loads it); "
                                f"remove the key and write plain values (a config file is trusted like code: "
                                f"docs/trust.md)")
            if key is not None and key != "<<":
                if key in seen:
                    problems.append(f"{key_node.start_mark.line + 1}: config key {'.'.join(here)}: given twice "
                                    f"(first at line {seen[key]}); the last one would silently win, keep one")
                else:
                    seen[key] = key_node.start_mark.line + 1
            problems += _problems(value_node, here, seen_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            problems += _problems(item, (*path, str(i)), seen_nodes)
    return problems


def loads(text: str, source: str = "<string>") -> Any:
    """Parse YAML text; ConfigError (naming `source`, line and key) on invalid YAML, a duplicate key, a YTE marker
    or an alias bomb."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{source}: nested too deeply to be a config file") from None
    if node is None:
        return None
    try:
        _expanded_size(node, {}, source)
        problems = _problems(node)
    except RecursionError:
        raise ConfigError(f"{source}: nested too deeply to be a config file") from None
    if problems:
        raise ConfigError(f"{source}: refused\n  " + "\n  ".join(f"{source}:{p}" for p in problems))
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:  # a constructor error (e.g. an unknown tag) the composer let through
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None


def read_yaml(path: str | Path) -> Any:
    """`loads` of a file (ConfigError when it is missing or not UTF-8)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: file not found") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return loads(text, str(p))
