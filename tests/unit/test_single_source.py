"""One source of truth per default: the config schema (workflow/schemas/*.yaml) is the only place a config key's
default is written. The test walks the schema's defaults and the library's source (its AST) and fails where the
library writes one of them again: a keyword default, a `.get(key, default)`, a click option default, a dataclass
field default or a dict of defaults with the same key and value. The library reads defaults with
cpt.core.schema.complete / default instead."""

from __future__ import annotations

import ast
from pathlib import Path

from cpt.core.schema import load_schema

SRC = Path(__file__).resolve().parents[2] / "src" / "cpt"

# Modules other helpers are rewriting right now; their schema duplicates are listed here until they land
# (the test checks each entry still has them, so the list can only shrink).
PENDING: dict[str, str] = {}


def schema_defaults() -> dict[str, list[tuple[str, object]]]:
    """key name -> [(dotted schema path, default)] for every scalar or list default of the schema."""
    out: dict[str, list[tuple[str, object]]] = {}

    def walk(node, path):
        if not isinstance(node, dict):
            return
        for name, sub in (node.get("properties") or {}).items():
            if isinstance(sub, dict):
                if "default" in sub and not isinstance(sub["default"], dict):
                    out.setdefault(name, []).append((".".join(path + [name]), sub["default"]))
                walk(sub, path + [name])
        for key in ("additionalProperties", "items", "then", "else"):
            if isinstance(node.get(key), dict):
                walk(node[key], path + (["*"] if key != "then" and key != "else" else []))
        for key in ("allOf", "oneOf", "anyOf"):
            for sub in node.get(key) or []:
                walk(sub, path)

    walk(load_schema(), [])
    return out


def _same(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, tuple):
        a = list(a)
    return type(a) is type(b) and a == b


def library_duplicates(defaults=None) -> list[str]:
    defaults = schema_defaults() if defaults is None else defaults

    def match(key, node):
        try:
            value = ast.literal_eval(node)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return None
        if value is None:
            return None
        for path, d in defaults.get(key, []):
            if _same(value, d):
                return path
        return None

    found = []
    for f in sorted(SRC.rglob("*.py")):
        rel = f.relative_to(SRC).as_posix()
        tree = ast.parse(f.read_text(encoding="utf-8"))
        for n in ast.walk(tree):
            hits = []
            if isinstance(n, ast.Dict):  # a dict of defaults: two or more keys of one schema object
                keyed = [(k.value, v) for k, v in zip(n.keys, n.values)
                         if isinstance(k, ast.Constant) and isinstance(k.value, str)]
                paths = [(k, match(k, v)) for k, v in keyed]
                parents: dict[str, list[str]] = {}
                for k, p in paths:
                    if p:
                        parents.setdefault(p.rsplit(".", 1)[0], []).append(k)
                hits = [(k, f"{parent}.{k}") for parent, ks in parents.items() if len(ks) >= 2 for k in ks]
            elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = n.args
                pos = a.posonlyargs + a.args
                pairs = list(zip(pos[len(pos) - len(a.defaults):], a.defaults))
                pairs += [(arg, d) for arg, d in zip(a.kwonlyargs, a.kw_defaults) if d is not None]
                hits = [(arg.arg, match(arg.arg, d)) for arg, d in pairs]
            elif isinstance(n, ast.Call):
                fn = n.func
                if (isinstance(fn, ast.Attribute) and fn.attr in ("get", "setdefault", "pop") and len(n.args) == 2
                        and isinstance(n.args[0], ast.Constant) and isinstance(n.args[0].value, str)):
                    hits = [(n.args[0].value, match(n.args[0].value, n.args[1]))]
                elif isinstance(fn, ast.Attribute) and fn.attr == "option":
                    names = [x.value for x in n.args if isinstance(x, ast.Constant) and isinstance(x.value, str)]
                    dest = [x for x in names if not x.startswith("-")] or \
                        [max(names, key=len).lstrip("-").split("/")[0].replace("-", "_")] if names else []
                    hits = [(dest[0], match(dest[0], kw.value)) for kw in n.keywords if kw.arg == "default" and dest]
            elif isinstance(n, ast.ClassDef):  # a dataclass of settings: three or more fields named as config keys
                fields = [(s.target.id, s.value) for s in n.body
                          if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name) and s.value is not None]
                if sum(1 for name, _ in fields if name in defaults) >= 3:
                    hits = [(name, match(name, v)) for name, v in fields]
            found += [f"{rel}:{n.lineno}: {key} (schema default {path})" for key, path in hits if path]
    return found


def test_no_default_is_written_twice():
    found = library_duplicates()
    left = [h for h in found if h.split(":", 1)[0] not in PENDING]
    assert not left, "defaults repeated in the library (read them with cpt.core.schema.default/complete):\n" + \
        "\n".join(left)
    stale = sorted(set(PENDING) - {h.split(":", 1)[0] for h in found})
    assert not stale, f"no longer repeat a schema default; remove from PENDING: {stale}"


def test_the_walk_finds_a_repeated_default(tmp_path, monkeypatch):
    """The walk itself: each kind of repetition is found (and a schema default it does not repeat is not)."""
    import sys

    mod = tmp_path / "cpt" / "x.py"
    mod.parent.mkdir()
    mod.write_text(
        "import click\n"
        "from dataclasses import dataclass\n"
        "DEFAULTS = {'max_length': 4096, 'num_bins': 10, 'other': 1}\n"
        "def f(section, num_workers=0, seed=7):\n"
        "    return section.get('pack_window', 8192)\n"
        "@click.option('--block_lines', default=2000)\n"
        "def g(block_lines): pass\n"
        "@dataclass\n"
        "class S:\n"
        "    lr: float = 0.0001\n"
        "    epochs: int = 1\n"
        "    seed: int = 99\n", encoding="utf-8")
    monkeypatch.setattr(sys.modules[__name__], "SRC", mod.parent)
    found = "\n".join(library_duplicates())
    for key in ("max_length", "num_bins", "num_workers", "pack_window", "block_lines", "lr", "epochs"):
        assert f": {key} (schema default" in found, key
    assert ": seed (" not in found and ": other (" not in found
