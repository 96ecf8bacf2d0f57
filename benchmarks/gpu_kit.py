"""The GPU kit's Python half (benchmarks/gpu_kit.sh gathers the wheels; this file checks and describes them).

    python benchmarks/gpu_kit.py repack WHEEL --keep A,B      keep only these native libraries of a wheel
    python benchmarks/gpu_kit.py manifest KIT [--limit-mib 64] manifest.json (name, version, sha256, size) + total
    python benchmarks/gpu_kit.py real-model KIT/real-model    config.json of the real-model experiment's first stage
    python benchmarks/gpu_kit.py check KIT                    completeness: every module the GPU check imports
                                                             resolves from the kit plus the image (gpu_image.txt)
    python benchmarks/gpu_kit.py torch-api scan|verify|resolve  the torch names the project uses, and whether a
                                                             torch release has them (see TORCH_API below)

The completeness check is static (nothing is installed or imported): it walks the import statements of the project's
modules reachable from the check's entry points (ENTRY_MODULES, ENTRY_FILES; lazy imports inside functions count,
imports guarded by `except ImportError` are optional), follows them into the kit's `scan` packages (module-level
imports only: ColossalAI's declared requirements are not what it imports), and requires every other top-level module
to come from a kit wheel of the lane, the image, or the standard library of Python 3.12. Each kit wheel's declared
requirements (Requires-Dist, markers evaluated for CPython 3.12 on Linux x86-64) must be met by the lane's wheels
(versions checked) or the image (names; versions where gpu_image.txt has them), less a wheel's `ignore:` list.
It is run per engine: torch = common lane (ColossalAI is not installed, so it is the one module allowed missing),
colossalai = hf451 + colossalai + common lanes.
"""

from __future__ import annotations

import argparse
import ast
import csv
import hashlib
import io
import json
import os
import re
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KIT_LIST = REPO / "benchmarks" / "gpu_kit.txt"
IMAGE_LIST = REPO / "benchmarks" / "gpu_image.txt"
TORCH_API = REPO / "benchmarks" / "torch_api.txt"
LIMIT_MIB = 64

# what gpu_check.sh runs: `python -m cpt.train` (each training case, under both engines), the kernels step, the env
# step (cpt.train.metrics), the dry-run validation (config, plugins), and these two scripts
ENTRY_MODULES = ("cpt.train.__main__", "cpt.train.cli", "cpt.train.kernels", "cpt.train.metrics",
                 "cpt.train.config", "cpt.train.plugins", "cpt.testing")
ENTRY_FILES = ("benchmarks/train_throughput.py", "benchmarks/gpu_kit.py")
ENGINES = {"torch": ("common",), "colossalai": ("hf451", "colossalai", "common")}
ENGINE_ABSENT = {"torch": {"colossalai"}}  # modules an engine's run does not have, by design
# stdlib of 3.11 (this machine) minus what 3.12 removed
REMOVED_IN_312 = {"asynchat", "asyncore", "distutils", "imp", "smtpd"}
STDLIB = (set(sys.stdlib_module_names) - REMOVED_IN_312) | {"__future__"}
TARGET_ENV = {"python_version": "3.12", "python_full_version": "3.12.0", "sys_platform": "linux",
              "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
              "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# ------------------------------------------------------------------------------------------------------ lists
@dataclass
class KitItem:
    lane: str
    name: str
    version: str
    sdist: bool = False
    env: dict = field(default_factory=dict)
    keep: list = field(default_factory=list)
    scan: bool = False
    ignore: set = field(default_factory=set)
    line: int = 0


def read_kit_list(path: Path = KIT_LIST) -> list[KitItem]:
    items = []
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        lane, req, *opts = line.split()
        if "==" not in req:
            raise SystemExit(f"{path}:{n}: {req!r}: pin an exact version (name==version)")
        name, version = req.split("==", 1)
        item = KitItem(lane, name, version, line=n)
        for o in opts:
            key, _, val = o.partition(":")
            if key == "sdist":
                item.sdist = True
            elif key == "scan":
                item.scan = True
            elif key == "env":
                k, _, v = val.partition("=")
                item.env[k] = v
            elif key == "keep":
                item.keep = val.split(",")
            elif key == "ignore":
                item.ignore = {norm(x) for x in val.split(",")}
            else:
                raise SystemExit(f"{path}:{n}: unknown option {o!r}")
        if lane not in {x for lanes in ENGINES.values() for x in lanes}:
            raise SystemExit(f"{path}:{n}: unknown lane {lane!r}")
        items.append(item)
    return items


@dataclass
class ImagePkg:
    name: str
    version: str | None
    modules: tuple
    source: str


def read_image_list(path: Path = IMAGE_LIST) -> dict[str, ImagePkg]:
    out = {}
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 4:
            raise SystemExit(f"{path}:{n}: expected 4 columns (name version modules source), got {len(parts)}")
        name, version, modules, source = parts
        out[norm(name)] = ImagePkg(name, None if version == "-" else version,
                                   tuple() if modules == "-" else tuple(modules.split(",")), source)
    return out


# ------------------------------------------------------------------------------------------------------ wheels
@dataclass
class Wheel:
    path: Path | None    # the .whl, or None for an installed distribution standing in for it (`root`)
    lane: str
    name: str
    version: str
    requires: list
    modules: dict  # module name -> member path (.py) or None (compiled / package dir without __init__ source)
    top: set
    root: Path | None = None  # site-packages folder of an installed distribution

    def read(self, member: str, zips: dict) -> str:
        if self.root is not None:
            return (self.root / member).read_text(encoding="utf-8", errors="replace")
        z = zips.setdefault(self.path, zipfile.ZipFile(self.path))
        return z.read(member).decode("utf-8", "replace")


def _module_names(names) -> dict:
    mods = {}
    for m in names:
        if ".dist-info/" in m or ".data/" in m:
            continue
        parts = m.split("/")
        stem = parts[-1]
        if stem.endswith(".py"):
            base = stem[:-3]
            mod = parts[:-1] if base == "__init__" else parts[:-1] + [base]
            if mod and all(p.isidentifier() for p in mod):
                mods[".".join(mod)] = m
        elif stem.endswith(".so"):
            base = stem.split(".", 1)[0]
            if base.isidentifier() and all(p.isidentifier() for p in parts[:-1]):
                mods.setdefault(".".join(parts[:-1] + [base]), None)
        for i in range(1, len(parts)):  # every folder on the way is a (possibly namespace) package
            pkg = parts[:i]
            if all(p.isidentifier() for p in pkg):
                mods.setdefault(".".join(pkg), None)
    return mods


def read_wheel(path: Path, lane: str) -> Wheel:
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
        meta = z.read(meta_name).decode("utf-8", "replace")
    head = meta.split("\n\n", 1)[0]
    fields = [line.split(": ", 1) for line in head.splitlines() if ": " in line]
    name = next(v for k, v in fields if k == "Name")
    version = next(v for k, v in fields if k == "Version")
    requires = [v for k, v in fields if k == "Requires-Dist"]
    mods = _module_names(names)
    return Wheel(path, lane, name, version, requires, mods, {m.split(".")[0] for m in mods})


def installed_kit(items: list[KitItem]) -> list[Wheel]:
    """The kit list's distributions as installed in this Python (same versions as the wheels: the list pins the
    lock's): the completeness check of the list itself, without downloading anything (tests/unit/test_gpu_kit.py)."""
    import importlib.metadata as md

    out = []
    for it in items:
        try:
            dist = md.distribution(it.name)
        except md.PackageNotFoundError:
            raise SystemExit(f"{it.name}=={it.version} (gpu_kit.txt:{it.line}) is not installed here") from None
        files = [str(f) for f in (dist.files or []) if not str(f).startswith("..")]
        mods = _module_names(files)
        root = Path(dist.locate_file(""))
        out.append(Wheel(None, it.lane, dist.metadata["Name"], dist.version, list(dist.requires or []), mods,
                         {m.split(".")[0] for m in mods}, root))
    return out


def kit_wheels(kit: Path) -> list[Wheel]:
    out = []
    for lane_dir in sorted(p for p in kit.iterdir() if p.is_dir() and p.name != "real-model"):
        for whl in sorted(lane_dir.glob("*.whl")):
            out.append(read_wheel(whl, lane_dir.name))
    return out


# ------------------------------------------------------------------------------------------------------ repack
def repack(wheel: Path, keep: list[str]) -> dict:
    """Rewrite `wheel` in place without the native libraries (lib*.so) not in `keep`; RECORD updated."""
    tmp = wheel.with_suffix(".tmp")
    dropped, kept = [], []
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
        names = src.namelist()
        missing = [k for k in keep if k not in names]
        if missing:
            raise SystemExit(f"{wheel.name}: keep: {missing} not in the wheel")
        record_name = next(n for n in names if n.endswith(".dist-info/RECORD"))
        for n in names:
            base = n.rsplit("/", 1)[-1]
            if base.startswith("lib") and base.endswith(".so") and n not in keep:
                dropped.append(n)
            elif n != record_name:
                dst.writestr(src.getinfo(n), src.read(n))
                kept.append(n)
        rows = [r for r in csv.reader(io.StringIO(src.read(record_name).decode())) if r and r[0] not in dropped]
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(rows)
        dst.writestr(src.getinfo(record_name), buf.getvalue())
    os.replace(tmp, wheel)
    return {"dropped": sorted(dropped), "kept_native": sorted(keep)}


# ------------------------------------------------------------------------------------------------------ manifest
def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def manifest(kit: Path, limit_mib: float = LIMIT_MIB, extra: dict | None = None) -> dict:
    files = []
    for p in sorted(x for x in kit.rglob("*") if x.is_file() and x.name != "manifest.json"):
        entry = {"path": str(p.relative_to(kit)), "size": p.stat().st_size, "sha256": sha256(p)}
        if p.suffix == ".whl":
            w = read_wheel(p, p.parent.name)
            entry.update(lane=w.lane, name=w.name, version=w.version)
        files.append(entry)
    total = sum(f["size"] for f in files)
    doc = {"limit_bytes": int(limit_mib * 2**20), "total_bytes": total, "total_mib": round(total / 2**20, 2),
           "wheels": sum(1 for f in files if f["path"].endswith(".whl")), "files": files, **(extra or {})}
    (kit / "manifest.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return doc


# ------------------------------------------------------------------------------------------------------ imports
@dataclass(frozen=True)
class Imp:
    module: str          # absolute dotted name
    names: tuple         # `from module import names` (may be submodules)
    lazy: bool           # inside a function
    optional: bool       # inside try/except ImportError (or a broader handler), or `if TYPE_CHECKING`
    line: int


_IMPORT_ERRORS = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}


def _handler_names(h: ast.ExceptHandler) -> set:
    if h.type is None:
        return {"BaseException"}
    types = h.type.elts if isinstance(h.type, ast.Tuple) else [h.type]
    return {t.id if isinstance(t, ast.Name) else t.attr if isinstance(t, ast.Attribute) else "" for t in types}


def imports_of(source: str, module: str, is_package: bool, filename: str = "<src>") -> list[Imp]:
    """Every import statement of a module, with absolute names, and whether it is lazy / optional."""
    tree = ast.parse(source, filename)
    out: list[Imp] = []

    def visit(node, lazy, optional):
        for child in ast.iter_child_nodes(node):
            c_lazy = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Try):
                guarded = any(_handler_names(h) & _IMPORT_ERRORS for h in child.handlers)
                for stmt in child.body:
                    visit_stmt(stmt, lazy, optional or guarded)
                for part in (child.handlers, child.orelse, child.finalbody):
                    for stmt in part:
                        visit_stmt(stmt, lazy, optional)
                continue
            if isinstance(child, ast.If) and (_is_type_checking(child.test) or _is_availability(child.test)):
                for stmt in child.body:
                    visit_stmt(stmt, lazy, True)
                for stmt in child.orelse:
                    visit_stmt(stmt, lazy, optional)
                continue
            record(child, lazy, optional)
            visit(child, c_lazy, optional)

    def visit_stmt(stmt, lazy, optional):
        wrapper = ast.Module(body=[stmt], type_ignores=[])
        visit(wrapper, lazy, optional)

    def record(node, lazy, optional):
        if isinstance(node, ast.Import):
            for a in node.names:
                out.append(Imp(a.name, (), lazy, optional, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module
            out.append(Imp(name, tuple(a.name for a in node.names), lazy, optional, node.lineno))

    visit(tree, False, False)
    return out


def _is_availability(test) -> bool:
    """`if config.NIBABEL_AVAILABLE:` / `if is_flash_attn_available():`: a library's own optional-import guard."""
    names = [n.id if isinstance(n, ast.Name) else n.attr for n in ast.walk(test)
             if isinstance(n, (ast.Name, ast.Attribute))]
    return any(re.search(r"AVAILABLE|(^|_)available$|^is_.*_available", x) for x in names)


def _is_type_checking(test) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class Sources:
    """Where each module comes from: the project (src/ and benchmarks/ files), kit wheels, the image, stdlib."""

    def __init__(self, repo: Path, wheels: list[Wheel], image: dict[str, ImagePkg], scan: set[str]):
        self.repo = repo
        self.project = {}
        for p in (repo / "src").rglob("*.py"):
            rel = p.relative_to(repo / "src").with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            self.project[".".join(parts)] = p
        self.project_top = {m.split(".")[0] for m in self.project}
        self.wheel_of_top = {}
        for w in wheels:
            for t in w.top:
                self.wheel_of_top.setdefault(t, w)
        self.image_of_top = {m: pkg for pkg in image.values() for m in pkg.modules}
        self.scan = scan  # top-level modules whose code is followed
        self._zips = {}

    def origin(self, module: str) -> str | None:
        top = module.split(".")[0]
        if top in self.project_top:
            return "project"
        if top in self.wheel_of_top:
            return "kit:" + self.wheel_of_top[top].name
        if top in self.image_of_top:
            return "image:" + self.image_of_top[top].name
        if top in STDLIB:
            return "stdlib"
        return None

    def source(self, module: str) -> tuple[str, bool] | None:
        """(text, is_package) of a module whose code is followed, or None."""
        top = module.split(".")[0]
        if top in self.project_top:
            p = self.project.get(module)
            return (p.read_text(encoding="utf-8"), p.name == "__init__.py") if p else None
        w = self.wheel_of_top.get(top)
        if w is not None and top in self.scan:
            member = w.modules.get(module)
            if member is None:
                return None
            return w.read(member, self._zips), member.endswith("__init__.py")
        return None

    def is_module(self, module: str) -> bool:
        top = module.split(".")[0]
        if top in self.project_top:
            return module in self.project
        w = self.wheel_of_top.get(top)
        return w is not None and module in w.modules


def import_closure(sources: Sources, entry_modules, entry_files) -> tuple[dict, list]:
    """{top-level module: [(importer, line), ...]} of everything required, and the optional imports seen."""
    required: dict[str, list] = {}
    optional = []
    seen = set()
    queue = [(m, None) for m in entry_modules]
    for f in entry_files:
        p = sources.repo / f
        if p.is_file():  # a missing one is a problem check() reports
            queue.append(("__file__:" + f, p.read_text(encoding="utf-8")))
    while queue:
        mod, text = queue.pop()
        if mod in seen:
            continue
        seen.add(mod)
        if text is None:
            src = sources.source(mod)
            if src is None:
                continue
            text, is_pkg = src
        else:
            is_pkg = False
        in_project = sources.origin(mod) == "project" or mod.startswith("__file__:")
        for imp in imports_of(text, mod if not mod.startswith("__file__:") else "__main__", is_pkg, mod):
            if not imp.module:
                continue
            if imp.optional or (imp.lazy and not in_project):
                optional.append((mod, imp.line, imp.module))
                continue
            targets = [imp.module] + [f"{imp.module}.{n}" for n in imp.names
                                      if n != "*" and sources.is_module(f"{imp.module}.{n}")]
            for t in targets:
                required.setdefault(t.split(".")[0], []).append((mod, imp.line))
                parts = t.split(".")
                for i in range(1, len(parts) + 1):  # importing a.b.c runs a, a.b, a.b.c
                    queue.append((".".join(parts[:i]), None))
    return required, optional


# ------------------------------------------------------------------------------------------------------ check
def _lowest(ver: str | None) -> str | None:
    """An image version: exact ("2.11.0", "2.11.0+cu130") or, where only a range is known, its lower bound (which
    is compared with a requirement's caps only: the image may well have a newer version)."""
    if not ver:
        return None
    if ver[0].isdigit():
        return ver.split("+")[0]
    low = re.search(r">=\s*([0-9][^,]*)", ver)
    return low.group(1).strip() if low else None


def _requirement_problems(w: Wheel, lane_wheels: dict, image: dict, ignore: set, extras: list) -> list[str]:
    from packaging.requirements import Requirement
    from packaging.version import Version

    out = []
    for spec in w.requires:
        req = Requirement(spec)
        if req.marker is not None and not req.marker.evaluate(TARGET_ENV):
            continue
        name = norm(req.name)
        if name in ignore:
            continue
        if name in lane_wheels:
            have = lane_wheels[name]
            if req.specifier and not req.specifier.contains(Version(have.version), prereleases=True):
                out.append(f"{w.name} {w.version} requires {spec}; the kit has {have.name} {have.version}")
            continue
        if name in image:
            ver = image[name].version
            low = _lowest(ver)
            spec_set = req.specifier
            if ver and not ver[0].isdigit():  # a range: its lower bound can only break a cap (<, <=, ==, ~=)
                from packaging.specifiers import SpecifierSet

                spec_set = SpecifierSet(",".join(str(x) for x in req.specifier if x.operator not in (">", ">=", "!=")))
            if low and spec_set and not spec_set.contains(Version(low), prereleases=True):
                out.append(f"{w.name} {w.version} requires {spec}; the image has {image[name].name} {ver}")
            if req.extras:
                extras.append(f"{w.name} {w.version} requires {spec}: the image's {req.name} extras are not checked")
            continue
        out.append(f"{w.name} {w.version} requires {spec}: neither in the kit's lanes nor in the image")
    return out


def check(kit: Path | None, repo: Path = REPO, kit_list: Path = KIT_LIST, image_list: Path = IMAGE_LIST,
          entry_modules=ENTRY_MODULES, entry_files=ENTRY_FILES) -> dict:
    """{engine: {"missing": [...], "requirements": [...], ...}} and "ok". kit None: the list's distributions as
    installed here stand in for the wheels."""
    items = read_kit_list(kit_list)
    image = read_image_list(image_list)
    wheels = kit_wheels(kit) if kit is not None else installed_kit(items)
    report = {"kit": str(kit) if kit is not None else "(installed distributions)", "engines": {}, "problems": []}
    by_name = {norm(w.name): w for w in wheels}
    for it in items:  # the kit holds exactly the list, at the listed versions, in the listed lanes
        w = by_name.get(norm(it.name))
        if w is None:
            report["problems"].append(f"{kit_list.name}:{it.line}: {it.name}=={it.version} is not in the kit")
        elif (w.version, w.lane) != (it.version, it.lane):
            report["problems"].append(f"{kit_list.name}:{it.line}: {it.name}: the kit has {w.version} in lane "
                                      f"{w.lane}, the list says {it.version} in lane {it.lane}")
    listed = {norm(it.name) for it in items}
    for w in wheels:
        if norm(w.name) not in listed:
            report["problems"].append(f"{w.path.name}: in the kit but not in {kit_list.name}")
    gone = [m for m in entry_modules if Sources(repo, [], {}, set()).source(m) is None]
    gone += [f for f in entry_files if not (repo / f).is_file()]
    if gone:  # an entry point that moved would make the check pass on nothing
        report["problems"].append(f"entry points not found in {repo}: {gone} (update ENTRY_MODULES/ENTRY_FILES "
                                  f"in benchmarks/gpu_kit.py)")
    ignore = {norm(it.name): it.ignore for it in items}
    scan = {t for it in items if it.scan for w in wheels if norm(w.name) == norm(it.name) for t in w.top}
    for engine, lanes in ENGINES.items():
        lane_wheels = [w for lane in lanes for w in wheels if w.lane == lane]  # first lane wins, like PYTHONPATH
        sources = Sources(repo, lane_wheels, image, scan)
        required, optional = import_closure(sources, entry_modules, entry_files)
        missing = {}
        provided = {}
        for top, where in sorted(required.items()):
            origin = sources.origin(top)
            if origin is None and top not in ENGINE_ABSENT.get(engine, set()):
                missing[top] = [f"{m}:{line}" for m, line in where[:5]]
            elif origin and not origin.startswith(("stdlib", "project")):
                provided[top] = origin
        names = {}
        for w in lane_wheels:
            names.setdefault(norm(w.name), w)
        extras: list = []
        reqs = [p for w in lane_wheels
                for p in _requirement_problems(w, names, image, ignore.get(norm(w.name), set()), extras)]
        report["engines"][engine] = {"lanes": list(lanes), "wheels": len(lane_wheels), "missing": missing,
                                     "requirements": reqs, "third_party": provided,
                                     "absent_by_design": sorted(ENGINE_ABSENT.get(engine, set()) & set(required)),
                                     "extras_unchecked": extras,
                                     "optional_imports_skipped": len(optional)}
    report["ok"] = not report["problems"] and all(
        not e["missing"] and not e["requirements"] for e in report["engines"].values())
    return report


# ------------------------------------------------------------------------------------------------------ real model
def real_model_config(out_dir: Path, config: Path) -> dict:
    """config.json of the model the real-model experiment's first training stage trains (the base GGUF's
    architecture, the expanded + padded vocabulary, untied as model.base.untie_embeddings says), and stage.json with
    that stage's training settings. The weights do not travel (the Q4_1 GGUF alone is 94 MiB): the GPU check builds
    random weights of this shape."""
    import tempfile

    import yaml
    from transformers import AutoConfig

    from cpt.core.sources import member_file
    from cpt.workflow.experiment import load

    cfg = load(config)
    base = cfg["model"]["base"]
    if base.get("kind") != "gguf":
        raise SystemExit(f"{config}: model.base.kind is {base.get('kind')!r}; the kit derives the shape from a GGUF")
    with tempfile.TemporaryDirectory(prefix="cpt-kit-gguf-") as tmp:
        path, digest = member_file(base["source"], base["member"], tmp)
        hf = AutoConfig.from_pretrained(tmp, gguf_file=path.name)
    vocab = int(cfg["tokenizer"]["vocab_size"])
    pad = cfg["model"].get("init", {}).get("pad_to_multiple_of") or 1
    hf.vocab_size = -(-vocab // pad) * pad
    if base.get("untie_embeddings", True):
        hf.tie_word_embeddings = False
    out_dir.mkdir(parents=True, exist_ok=True)
    hf.to_json_file(str(out_dir / "config.json"))
    stages = cfg["train"]["stages"]
    first = next(iter(stages))
    raw = yaml.safe_load(config.read_text(encoding="utf-8"))["train"]
    section = {**raw.get("defaults", {}), **raw["stages"][first]}
    keep = ("lr", "warmup_steps", "max_length", "micro_batch_size", "freeze_non_embeds", "seed")
    stage = {"experiment": cfg.get("experiment"), "config": str(config.relative_to(REPO) if config.is_absolute()
                                                                  and REPO in config.parents else config),
             "stage": first, "settings": {k: section[k] for k in keep if k in section},
             "gguf": {"source": base["source"], "member": base["member"], "sha256": digest},
             "weights": "random (the GGUF does not fit in the kit); shape and settings are the experiment's"}
    (out_dir / "stage.json").write_text(json.dumps(stage, indent=2) + "\n", encoding="utf-8")
    return stage


# ------------------------------------------------------------------------------------------------------ torch API
# The project must not use torch APIs newer than the GPU image's torch 2.11. `scan` lists every dotted torch name the
# code spells (`torch.a.b`, `import torch.a as x; x.b`, `from torch.a import b`); `verify --against WHEEL` checks each
# against a torch release's Python sources (any platform's wheel: the .py/.pyi files are the same), statically: the
# name's module must exist there and its last component must be bound in that module (defined, imported or listed in
# its .pyi stubs); names torch binds dynamically (torch.float32, torch.zeros: from the C extension) are found in the
# _C stubs. The verified list is benchmarks/torch_api.txt; tests/unit/test_gpu_kit.py fails when the code uses a torch
# name that is not in it (run `verify` against the torch 2.11 wheel and commit the list). On the GPU, `resolve` imports
# each listed name from the image's real torch 2.11 (gpu_check.sh --kit, env step). Not covered: methods and
# attributes reached through objects (tensor.foo(), module.bar), and new keyword arguments of existing functions.
SCAN_DIRS = ("src", "benchmarks", "workflow/scripts")
# what PyTorch's own engine (issue 23: FSDP2, tensor parallel, DCP, activation checkpointing, compile, SDPA) is
# likely to need, verified ahead against 2.11 so that its author finds them in the list
PLANNED_TORCH_NAMES = (
    "torch.distributed.fsdp.fully_shard", "torch.distributed.fsdp.FSDPModule",
    "torch.distributed.fsdp.MixedPrecisionPolicy", "torch.distributed.fsdp.CPUOffloadPolicy",
    "torch.distributed.fsdp.OffloadPolicy", "torch.distributed.device_mesh.init_device_mesh",
    "torch.distributed.device_mesh.DeviceMesh", "torch.distributed.tensor.DTensor",
    "torch.distributed.tensor.distribute_tensor", "torch.distributed.tensor.Shard",
    "torch.distributed.tensor.Replicate", "torch.distributed.tensor.parallel.parallelize_module",
    "torch.distributed.tensor.parallel.ColwiseParallel", "torch.distributed.tensor.parallel.RowwiseParallel",
    "torch.distributed.tensor.parallel.SequenceParallel", "torch.distributed.tensor.parallel.PrepareModuleInput",
    "torch.distributed.tensor.parallel.loss_parallel", "torch.distributed.checkpoint.save",
    "torch.distributed.checkpoint.load", "torch.distributed.checkpoint.FileSystemWriter",
    "torch.distributed.checkpoint.FileSystemReader", "torch.distributed.checkpoint.state_dict.get_state_dict",
    "torch.distributed.checkpoint.state_dict.set_state_dict",
    "torch.distributed.checkpoint.state_dict.get_model_state_dict",
    "torch.distributed.checkpoint.state_dict.StateDictOptions",
    "torch.distributed.algorithms._checkpoint.checkpoint_wrapper.checkpoint_wrapper",
    "torch.distributed.algorithms._checkpoint.checkpoint_wrapper.apply_activation_checkpointing",
    "torch.utils.checkpoint.checkpoint", "torch.nn.attention.sdpa_kernel", "torch.nn.attention.SDPBackend",
    "torch.nn.utils.clip_grad_norm_", "torch.nn.parallel.DistributedDataParallel", "torch.compile",
    "torch.cuda.reset_peak_memory_stats", "torch.cuda.synchronize", "torch.distributed.init_process_group",
)


def torch_names(repo: Path = REPO, dirs=SCAN_DIRS) -> dict[str, list[str]]:
    """{dotted torch name: [file:line, ...]} used by the project's code."""
    found: dict[str, list[str]] = {}
    for d in dirs:
        for p in sorted((repo / d).rglob("*.py")):
            try:
                tree = ast.parse(p.read_text(encoding="utf-8"), str(p))
            except SyntaxError:
                continue
            rel = str(p.relative_to(repo))
            alias = {}  # local name -> torch dotted name
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    for a in node.names:
                        if a.name == "torch" or a.name.startswith("torch."):
                            alias[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
                            found.setdefault(a.name, []).append(f"{rel}:{node.lineno}")
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level and (
                        node.module == "torch" or node.module.startswith("torch.")):
                    for a in node.names:
                        if a.name == "*":
                            continue
                        full = f"{node.module}.{a.name}"
                        alias[a.asname or a.name] = full
                        found.setdefault(full, []).append(f"{rel}:{node.lineno}")
            for node in ast.walk(tree):
                if isinstance(node, ast.Attribute) and not isinstance(getattr(node, "ctx", None), ast.Store):
                    chain = []
                    cur = node
                    while isinstance(cur, ast.Attribute):
                        chain.append(cur.attr)
                        cur = cur.value
                    if isinstance(cur, ast.Name) and cur.id in alias:
                        full = ".".join([alias[cur.id], *reversed(chain)])
                        found.setdefault(full, []).append(f"{rel}:{node.lineno}")
    return dict(sorted(found.items()))


class TorchTree:
    """A torch release's Python sources, read from a wheel (or an installed torch folder)."""

    def __init__(self, path: Path):
        self.files: dict[str, str] = {}
        if path.suffix == ".whl":
            with zipfile.ZipFile(path) as z:
                for n in z.namelist():
                    if n.startswith("torch/") and n.endswith((".py", ".pyi")):
                        self.files[n] = z.read(n).decode("utf-8", "replace")
        else:
            for p in path.rglob("*"):
                if p.suffix in (".py", ".pyi"):
                    self.files["torch/" + str(p.relative_to(path))] = p.read_text(encoding="utf-8", errors="replace")
        self._bound = {}
        stubs = [t for n, t in self.files.items() if n.startswith("torch/_C/") and n.endswith(".pyi")]
        self.c_names = self._names("\n".join(stubs)) if stubs else set()

    def module_files(self, dotted: str) -> list[str]:
        base = dotted.replace(".", "/")
        return [f for f in (f"{base}/__init__.py", f"{base}/__init__.pyi", f"{base}.py", f"{base}.pyi")
                if f in self.files]

    @staticmethod
    def _names(text: str) -> set:
        """Identifiers a module binds or mentions in an import/`__all__`/assignment (a superset, never parsed)."""
        return set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text))

    def bound(self, module: str, depth: int = 0) -> set:
        """Names a module mentions, with those of the modules it star-imports (`from .x import *`)."""
        if module not in self._bound:
            files = self.module_files(module)
            text = "\n".join(self.files[f] for f in files)
            names = self._names(text)
            is_pkg = any(f.rsplit("/", 1)[-1].startswith("__init__.") for f in files)
            for rel in re.findall(r"^\s*from\s+([.\w]+)\s+import\s+\*", text, re.M):
                if depth < 4:
                    names |= self.bound(self._absolute(module, rel, is_pkg), depth + 1)
            self._bound[module] = names
        return self._bound[module]

    @staticmethod
    def _absolute(module: str, rel: str, is_pkg: bool) -> str:
        if not rel.startswith("."):
            return rel
        level = len(rel) - len(rel.lstrip("."))
        base = module.split(".") if is_pkg else module.split(".")[:-1]
        base = base[: len(base) - (level - 1)]
        tail = rel.lstrip(".")
        return ".".join(base + ([tail] if tail else []))

    def has(self, dotted: str) -> tuple[bool, str]:
        parts = dotted.split(".")
        if self.module_files(dotted):
            return True, "module"
        # longest module prefix
        for i in range(len(parts) - 1, 0, -1):
            mod = ".".join(parts[:i])
            if self.module_files(mod):
                name = parts[i]
                if name in self.bound(mod):
                    return True, f"bound in {mod}"
                if mod == "torch" and name in self.c_names:
                    return True, "torch._C stubs"
                return False, f"{mod} has no {name!r}"
        return False, "no such module"


def verify_names(names, tree: TorchTree) -> dict[str, str]:
    """{name: "" if the release has it, else why not}."""
    return {n: "" if tree.has(n)[0] else tree.has(n)[1] for n in names}


def read_api_list(path: Path = TORCH_API) -> set[str]:
    if not path.is_file():
        return set()
    return {line.split()[0] for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")}


def resolve_names(names) -> tuple[dict, dict]:
    """On a machine with the torch to test: import/getattr each dotted name. ({name: why it is missing},
    {name: the non-torch module its import needs that is not installed}); the second is not an API problem."""
    import importlib

    missing, needs = {}, {}
    for n in names:
        parts = n.split(".")
        for i in range(len(parts), 0, -1):
            mod = ".".join(parts[:i])
            try:
                obj = importlib.import_module(mod)
            except ModuleNotFoundError as exc:
                if exc.name and not (exc.name == "torch" or exc.name.startswith("torch.")):
                    needs[n] = exc.name
                    break
                continue
            try:
                for attr in parts[i:]:
                    obj = getattr(obj, attr)
            except AttributeError as exc:
                missing[n] = f"AttributeError: {exc}"
            break
        else:
            missing[n] = "no importable module prefix"
    return missing, needs


# ------------------------------------------------------------------------------------------------------ cli
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("repack")
    p.add_argument("wheel", type=Path)
    p.add_argument("--keep", required=True)
    p = sub.add_parser("manifest")
    p.add_argument("kit", type=Path)
    p.add_argument("--limit-mib", type=float, default=LIMIT_MIB)
    p.add_argument("--extra-json", default=None, help="a JSON object merged in (build time, commit, ...)")
    p = sub.add_parser("real-model")
    p.add_argument("out", type=Path)
    p.add_argument("--config", type=Path, default=REPO / "config" / "smollm2-zh.yaml")
    p = sub.add_parser("check")
    p.add_argument("kit", type=Path, nargs="?", help="a built kit (default: the list's installed distributions)")
    p.add_argument("--json-out", default=None)
    p = sub.add_parser("torch-api")
    p.add_argument("action", choices=("scan", "verify", "resolve"))
    p.add_argument("--against", type=Path, help="verify: a torch wheel (any platform) or an installed torch folder")
    p.add_argument("--write", action="store_true", help="verify: write benchmarks/torch_api.txt")
    p.add_argument("--json-out", default=None)
    a = ap.parse_args(argv)

    if a.cmd == "repack":
        print(json.dumps(repack(a.wheel, a.keep.split(","))))
        return 0
    if a.cmd == "manifest":
        extra = json.loads(a.extra_json) if a.extra_json else None
        doc = manifest(a.kit, a.limit_mib, extra)
        print(f"{a.kit}: {doc['wheels']} wheels, {doc['total_mib']} MiB (limit {a.limit_mib:g} MiB)")
        if doc["total_bytes"] > doc["limit_bytes"]:
            print(f"error: the kit is {doc['total_mib']} MiB, over the {a.limit_mib:g} MiB limit", file=sys.stderr)
            return 1
        return 0
    if a.cmd == "real-model":
        sys.path.insert(0, str(REPO / "src"))
        print(json.dumps(real_model_config(a.out, a.config)))
        return 0
    if a.cmd == "check":
        rep = check(a.kit)
        if a.json_out:
            Path(a.json_out).write_text(json.dumps(rep, indent=2) + "\n", encoding="utf-8")
        for prob in rep["problems"]:
            print("problem:", prob, file=sys.stderr)
        for engine, e in rep["engines"].items():
            print(f"{engine}: lanes {','.join(e['lanes'])}, {e['wheels']} wheels, "
                  f"{len(e['third_party'])} third-party top-level modules resolved, "
                  f"{len(e['missing'])} missing, {len(e['requirements'])} unmet requirements")
            for top, where in e["missing"].items():
                print(f"  missing {top} (imported at {', '.join(where)})", file=sys.stderr)
            for r in e["requirements"]:
                print(f"  unmet: {r}", file=sys.stderr)
        print("complete" if rep["ok"] else "INCOMPLETE")
        return 0 if rep["ok"] else 1
    # torch-api
    if a.action == "scan":
        names = torch_names()
        for n, where in names.items():
            print(f"{n}  {where[0]}" + (f" (+{len(where) - 1})" if len(where) > 1 else ""))
        return 0
    if a.action == "verify":
        if not a.against:
            ap.error("verify needs --against WHEEL_OR_DIR")
        tree = TorchTree(a.against)
        names = torch_names()
        for n in PLANNED_TORCH_NAMES:
            names.setdefault(n, ["(planned: the torch engine)"])
        names = dict(sorted(names.items()))
        verdict = verify_names(names, tree)
        bad = {n: why for n, why in verdict.items() if why}
        for n, why in bad.items():
            print(f"not in {a.against.name}: {n} ({why}; used at {', '.join(names[n][:3])})", file=sys.stderr)
        if a.write:
            lines = [f"# torch names the project's code uses, each verified present in {a.against.name}",
                     "# (python benchmarks/gpu_kit.py torch-api verify --against WHEEL --write; see TORCH_API in",
                     "# benchmarks/gpu_kit.py). Names missing there are listed commented out, with why.", ""]
            lines += [n if not why else f"# MISSING {n}  ({why})" for n, why in verdict.items()]
            TORCH_API.write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(f"{len(verdict) - len(bad)} of {len(verdict)} torch names present in {a.against.name}")
        return 1 if bad else 0
    names = sorted(read_api_list() | set(torch_names()))
    bad, needs = resolve_names(names)
    import torch

    doc = {"torch": torch.__version__, "names": len(names), "missing": bad, "needs_uninstalled_module": needs}
    if a.json_out:
        Path(a.json_out).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(doc))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
