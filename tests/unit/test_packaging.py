"""pyproject.toml declares every third-party import of src/ (pinned as in requirements.lock), ships what the library
reads from outside src/, and names a LICENSE that exists."""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
import tomllib
from pathlib import Path

from cpt.core.shipped import SHIPPED

REPO = Path(__file__).resolve().parents[2]
# colossalai: installed with --no-deps (its metadata pins torch<=2.5.1); pyproject.toml says so
NOT_DECLARED_ON_PURPOSE = {"colossalai"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements(project: dict) -> dict[str, str]:
    reqs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        reqs += extra
    out = {}
    for r in reqs:
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^;\s]+)", r.strip())
        assert m, f"pyproject.toml: {r!r} is not pinned with =="
        out[_norm(m[1])] = m[2]
    return out


def _imports() -> dict[str, str]:
    found = {}
    for f in sorted((REPO / "src" / "cpt").rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "cpt":
                    found.setdefault(top, str(f.relative_to(REPO)))
    return found


def test_every_import_of_src_is_a_declared_pinned_dependency():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = _requirements(project)
    lock = {_norm(n): v for n, v in (x.split("==") for x in (REPO / "requirements.lock").read_text().split()
                                     if "==" in x)}
    dists = md.packages_distributions()
    missing = []
    for module, where in _imports().items():
        names = {_norm(d) for d in dists.get(module, [module])}
        if names & NOT_DECLARED_ON_PURPOSE:
            continue
        if not names & declared.keys():
            missing.append(f"{where}: imports {module} ({', '.join(sorted(names))}), not in pyproject.toml")
    assert not missing, "\n".join(missing)
    for name, version in declared.items():
        if name in lock:  # extras like flash-attn (GPU only) are not in the CPU lock
            assert lock[name] == version, f"pyproject.toml pins {name}=={version}, requirements.lock {lock[name]}"
    assert "colossalai" not in declared and "colossalai" in lock


def test_distribution_name_license_and_shipped_files():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["name"] == "colossal-llama-cpt"  # `cpt` on PyPI is an unrelated package
    assert project["license"]["text"] == "Apache-2.0"
    assert "Apache License" in (REPO / "LICENSE").read_text() and "Version 2.0" in (REPO / "LICENSE").read_text()
    assigned = [ast.literal_eval(n.value) for n in ast.parse((REPO / "setup.py").read_text()).body
                if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", None) == "SHIPPED"]
    assert assigned == [SHIPPED]  # setup.py copies exactly what cpt.core.shipped reads
    for rel in SHIPPED:
        assert (REPO / rel).exists(), rel
