"""The house (docs/architecture.md): layers that import-linter enforces, no import cycles (imports inside functions
included), modules of a readable size, and one owner per concept."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src" / "cpt"
MAX_LINES = 420  # "about 400"


def _modules() -> dict[str, Path]:
    out = {}
    for p in SRC.rglob("*.py"):
        name = ".".join(p.relative_to(SRC.parent).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = p
    return out


def test_lint_imports_keeps_the_layers():
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    r = subprocess.run([str(Path(sys.executable).with_name("lint-imports")), "--no-cache"], cwd=REPO,
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 broken" in r.stdout


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module (iterative)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def test_the_cycle_finder_finds_a_cycle():
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles_counting_imports_inside_functions():
    sys.path.insert(0, str(REPO / "src"))
    try:
        graph = grimp.build_graph("cpt", cache_dir=None)
    finally:
        sys.path.remove(str(REPO / "src"))
    edges = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    # grimp counts every import statement, wherever it stands; prove it on one known function-level import
    lazy = [(m, p) for m, p in _modules().items() if "\n    from cpt." in p.read_text(encoding="utf-8")]
    assert lazy, "no function-level import left to check the graph with"
    assert strongly_connected(edges) == []


def test_no_module_over_about_400_lines():
    big = {str(p.relative_to(REPO)): n for p in SRC.rglob("*.py")
           if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert big == {}


# ------------------------------------------------------------------------------------------ one owner per concept
def _string_constants(path: Path) -> set[str]:
    """String literals of a module that are not docstrings."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docs = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docs.add(id(first.value))
    return {n.value for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs}


# name -> the modules that may spell it (its owner)
OWNED_NAMES = {
    "metrics.jsonl": {"cpt.artifacts.stagedir"},
    "run.json": {"cpt.artifacts.stagedir"},
    "checkpoints": {"cpt.artifacts.stagedir"},
    "latest": {"cpt.artifacts.stagedir"},
    "state.json": {"cpt.artifacts.stagedir"},
    "train_config.json": {"cpt.artifacts.stagedir"},
    "candidates.jsonl": {"cpt.artifacts.layout", "cpt.tokenizer.pieces", "cpt.tokenizer.extended"},
    "evaluate/_idioms": {"cpt.artifacts.layout"},
    "clean-work": {"cpt.artifacts.layout"},
    "torch.distributed.run": {"cpt.launch.plan", "cpt.launch.torchrun"},  # the launcher and its wrapper
}


@pytest.mark.parametrize("name", sorted(OWNED_NAMES))
def test_each_name_is_spelled_by_its_owner_only(name):
    spelled = {m for m, p in _modules().items() if name in _string_constants(p)}
    assert spelled <= OWNED_NAMES[name], f"{name!r} spelled outside its owner: {sorted(spelled - OWNED_NAMES[name])}"
    assert spelled, f"{name!r}: its owner no longer spells it (update this table)"


def test_rules_ask_the_layout_for_every_path():
    """No rule file builds a results path itself (L.root / ...) or spells a results file name."""
    for rule in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        text = rule.read_text(encoding="utf-8")
        assert "L.root /" not in text and "L.root/" not in text, rule.name
        for literal in ("candidates.jsonl", "evaluate/_idioms", "-work", "metrics.jsonl", "run.json"):
            assert literal not in text, f"{rule.name} spells {literal!r}; ask cpt.artifacts.layout.Layout"


def test_category_languages_have_one_reader_of_the_config():
    """corpus.categories.<name>.lang is read by cpt.artifacts.corpus for every box; only the corpus box itself,
    which writes it into its manifests, reads its own section directly."""
    readers = {m for m, p in _modules().items()
               if '["lang"]' in (text := p.read_text(encoding="utf-8")) and '["categories"]' in text}
    assert "cpt.artifacts.corpus" in readers
    assert {m for m in readers if not m.startswith("cpt.corpus.")} == {"cpt.artifacts.corpus"}


def test_the_library_never_imports_the_command_line():
    sys.path.insert(0, str(REPO / "src"))
    try:
        graph = grimp.build_graph("cpt", cache_dir=None)
    finally:
        sys.path.remove(str(REPO / "src"))
    importers = {m for m in graph.find_modules_that_directly_import("cpt.cli")}
    assert importers <= {"cpt.__main__", "cpt.cli.__main__"}
