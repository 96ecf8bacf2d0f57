"""dvc.yaml for an experiment: one DVC stage per recipe stage, each running Snakemake targets (no logic twice).

    python -m cpt.workflow.dvc --config config/config.yaml > dvc.yaml                     # the embedded demo
    python -m cpt.workflow.dvc --config config/colossal-llama-2-7b.yaml --wdir ../.. \\
        > dvc/colossal-llama-2-7b/dvc.yaml                                          # another experiment

Snakemake stays the only description of how artifacts are made. Deps of a stage: its inputs (outs of earlier
stages, raw data), its rule files, the scripts of its rules and the library code they import (the closure of
`cpt.*` imports, module by module), so a code change reruns exactly the stages using it. Each DVC stage's `cmd` is
`snakemake --cores all --configfile <config> --allowed-rules <its rules> <its targets>`, where the targets and
rules come from Snakemake itself (`snakemake --summary`) and are grouped by the results/<experiment>/<stage>
folders of cpt.core.config.Layout. `--allowed-rules` keeps a DVC stage from re-running another stage's rules (DVC
decides what is out of date, by content hash). Params are the config sections each stage reads, so `dvc repro`
reruns exactly what a changed section affects, and dvc.lock pins the hashes of the raw data archives, the
tokenizers, the initialised model, the dataset shards, every training stage's final checkpoint and the
evaluation results.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import yaml

from cpt.artifacts.layout import Layout
from cpt.core import config as cptconfig
from cpt.core.errors import ConfigError
from cpt.core.yamlio import read_yaml
from cpt.workflow.dvc_checkout import MARKER, align_checkout_mtimes  # noqa: F401 (re-exported)

REPO_ROOT = Path(__file__).resolve().parents[3]


@dataclass
class Group:
    """One DVC stage: the Snakemake outputs under `outs` (relative paths), its deps and config params."""

    name: str
    outs: list
    deps: list = field(default_factory=list)
    params: list = field(default_factory=list)
    rule_files: list = field(default_factory=list)
    targets: list = field(default_factory=list)
    rules: list = field(default_factory=list)
    work: list = field(default_factory=list)  # folders of temp() outputs: their rules run here, DVC keeps nothing


def snakemake_outputs(configfile: str | os.PathLike, workdir: str | os.PathLike = REPO_ROOT,
                      snakemake: Sequence[str] | None = None, with_status: bool = False) -> list[tuple]:
    """(output path, rule) of every job of the experiment's DAG, from `snakemake --summary` (starts no job);
    with_status=True adds the status column ("removed temp file" marks temp() outputs)."""
    cmd = [*(snakemake or [sys.executable, "-m", "snakemake"]), "--summary", "--cores", "1", "--configfile",
           str(configfile), "--quiet", "all"]  # no banner; --summary still prints its table
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(workdir) / "src"), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, env=env, timeout=600)
    if r.returncode != 0:
        raise ConfigError(f"cannot plan {configfile} for DVC: `{' '.join(map(str, cmd))}` (in {workdir}) exited "
                          f"{r.returncode}: {_failure_text(r)}")
    rows = []
    for line in r.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) >= 5 and parts[0] != "output_file":
            rows.append((parts[0], parts[2], parts[4]) if with_status else (parts[0], parts[2]))
    return rows


def _failure_text(r: subprocess.CompletedProcess) -> str:
    """What a failed Snakemake said: its error lines (stderr, else stdout), never an empty message."""
    text = "\n".join(x for x in (r.stderr.strip(), r.stdout.strip()) if x)
    if not text:
        return "no output at all (run that command yourself to see why)"
    lines = text.splitlines()
    start = next((i for i, x in enumerate(lines) if re.search(r"Error|error:|Exception", x)), max(0, len(lines) - 40))
    return "\n" + "\n".join(lines[start:start + 40])


def _under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def groups_for(config: Mapping) -> list[Group]:
    """The DVC stages of an experiment, in pipeline order, with their outs, deps and params (no targets yet)."""
    L = Layout(config)
    root = str(L.root)
    corpus, tokenizer = f"{root}/corpus", f"{root}/tokenizer"
    groups = []
    corpus_outs = [corpus]
    if config.get("clean", {}).get("enabled"):
        corpus_outs.append(str(L.clean))
    groups.append(Group("corpus", corpus_outs, deps=["data/sources.yaml", "data/downloads"],
                        params=[k for k in ("corpus", "clean") if k in config],
                        rule_files=["workflow/rules/corpus.smk", "workflow/rules/clean.smk"],
                        work=[f"{L.clean}-work"]))
    groups.append(Group("tokenizer", [tokenizer], deps=[corpus], params=["tokenizer"],
                        rule_files=["workflow/rules/tokenizer.smk"]))
    base = config.get("model", {}).get("base", {}) or {}
    local = base.get("kind") == "local" or bool(base.get("path"))
    if local:  # the user's LLaMA-2 weights are read in place: hashed into dvc.lock as a dependency
        base_outs, base_deps = [str(L.model_base_check)], [tokenizer, str(base["path"])]
        base_model = [str(base["path"]), str(L.model_base_check)]
    else:
        base_outs, base_deps = [str(L.model_base)], [tokenizer]
        base_model = [str(L.model_base)]
    groups.append(Group("model-base", base_outs, deps=base_deps, params=["model.base"],
                        rule_files=["workflow/rules/model.smk"]))
    from_stage = config.get("model", {}).get("init", {}).get("from_stage")
    init_source = [str(L.final(from_stage))] if from_stage else base_model
    groups.append(Group("model-init", [str(L.model_init)], deps=[tokenizer, corpus, *init_source],
                        params=["model.init"], rule_files=["workflow/rules/model.smk"]))
    sources = {"base_model": base_model, "init": [str(L.model_init)]}
    stages = cptconfig.stage_names(config)
    dataset_keys = [k for k in config.get("dataset", {}) if k != "stages"]
    for s in stages:
        replay = cptconfig.replay_from(config["dataset"]["stages"].get(s))  # replayed data of earlier stages
        groups.append(Group(f"dataset-{s}", [str(L.dataset(s))], deps=[corpus, tokenizer,
                                                                        *[str(L.dataset(r)) for r in replay]],
                            params=[f"dataset.{k}" for k in dataset_keys] + [f"dataset.stages.{s}"],
                            rule_files=["workflow/rules/dataset.smk"]))
    for s in stages:
        src = config["train"]["stages"][s]["init_from"]
        source = sources.get(src, [str(L.final(src))])
        params = ["train.defaults"] if "defaults" in config["train"] else []
        groups.append(Group(f"train-{s}", [str(L.final(s))], deps=[str(L.dataset(s)), *source],
                            params=params + [f"train.stages.{s}"], rule_files=["workflow/rules/train.smk"]))
    finals = [str(L.final(s)) for s in stages]
    models = [*base_model, str(L.model_init), *finals]
    eval_keys = [f"evaluate.{k}" for k in config.get("evaluate", {}) if k != "generate"] or ["evaluate"]
    groups.append(Group("evaluate", [f"{root}/evaluate"], deps=[corpus, tokenizer, *models],
                        params=eval_keys, rule_files=["workflow/rules/evaluate.smk"]))
    groups.append(Group("generate", [f"{root}/generations"], deps=models, params=["evaluate.generate"],
                        rule_files=["workflow/rules/evaluate.smk"]))
    groups.append(Group("report", [str(L.report)], deps=[f"{root}/evaluate", f"{root}/generations", str(L.model_init),
                                                         *finals],
                        params=["report"], rule_files=["workflow/rules/report.smk"]))
    gguf = (config.get("export") or {}).get("gguf") or {}
    if gguf.get("enabled"):  # optional GGUF files (rule export_gguf): one stage of their own, versioned too
        groups.append(Group("export", [str(L.gguf("-").parent)],
                            deps=[str(L.tokenizer_base), *(str(L.final(s)) for s in cptconfig.gguf_stages(config))],
                            params=["export"], rule_files=["workflow/rules/export.smk"]))
    return groups


def assign_targets(groups: list[Group], outputs: Sequence[tuple[str, str]]) -> list[Group]:
    """Put each Snakemake output into the group whose outs contain it; drop groups without any.

    Every output of the DAG must land in a group (else the artifact would be made but not versioned).
    Outputs nested inside another output of the same group are not targets of their own.
    """
    unassigned = []
    for path, rule in outputs:
        worker = next((g for g in groups if any(_under(path, w) for w in g.work)), None)
        if worker is not None:  # a temp() intermediate: its rule runs in that stage, no target, nothing versioned
            if rule not in worker.rules:
                worker.rules.append(rule)
            continue
        owner = next((g for g in groups if any(_under(path, o) for o in g.outs)), None)
        if owner is None:
            unassigned.append(f"{path} (rule {rule})")
            continue
        owner.targets.append(path)
        if rule not in owner.rules:
            owner.rules.append(rule)
    if unassigned:
        raise ConfigError(
            "these Snakemake outputs lie outside every DVC stage's outs (add them to cpt.workflow.dvc.groups_for): "
            + ", ".join(unassigned)
        )
    kept = []
    for g in groups:
        targets = sorted(set(g.targets))
        g.targets = [t for t in targets if not any(t != o and _under(t, o) for o in targets)]
        if g.targets:
            kept.append(g)
    present = {o for g in kept for o in g.outs}
    for g in kept:  # deps on a stage the workflow does not have (yet) are dropped; files on disk stay
        g.deps = [d for d in g.deps if d in present or any(_under(d, o) for o in present) or not d.startswith("results/")]
    return kept


def _present(raw: Mapping, dotted: str) -> bool:
    node = raw
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


_RULE = re.compile(r"^\s*rule\s+(\w+)\s*:", re.M)
_SCRIPT = re.compile(r"^\s*script\s*:\s*(?:\n\s*)?[\"']([^\"']+)[\"']", re.M)


def rule_scripts(root: Path = REPO_ROOT) -> dict[str, str]:
    """rule name -> its script (path relative to the repository), from workflow/rules/*.smk."""
    out = {}
    for smk in sorted((root / "workflow" / "rules").glob("*.smk")):
        text = smk.read_text(encoding="utf-8")
        starts = [(m.start(), m.group(1)) for m in _RULE.finditer(text)] + [(len(text), None)]
        for (a, name), (b, _) in zip(starts, starts[1:]):
            m = _SCRIPT.search(text, a, b)
            if m:
                out[name] = os.path.normpath(os.path.join("workflow", "rules", m.group(1)))
    return out


def _module_file(module: str, src: Path) -> Path | None:
    base = src.joinpath(*module.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _imports(path: Path, src: Path) -> set[Path]:
    """Files of the `cpt` modules a Python file imports (anywhere in it, lazy imports included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = ".".join(path.relative_to(src).with_suffix("").parts) if path.is_relative_to(src) else ""
    if path.name == "__init__.py":
        package = package.rsplit(".", 1)[0] if "." in package else package
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[:len(parts) - node.level + (1 if path.name == "__init__.py" else 0)] or parts[:1]
                mod = ".".join([*parts, mod] if mod else parts)
            names.add(mod)
            names.update(f"{mod}.{a.name}" for a in node.names)
    files = set()
    for name in names:
        if name == "cpt" or name.startswith("cpt."):
            f = _module_file(name, src)
            if f is not None:
                files.add(f)
    return files


# below the boxes and above them, a module is a dependency on its own; a box (cpt.<box>) is one as a whole, since
# its modules run each other in ways imports do not show (the trainer is started as `python -m cpt.train`)
SHARED_LAYERS = ("core", "artifacts", "measure", "launch", "cli", "workflow")


# read by every rule: the Snakefile and the helpers it includes (their `cpt` imports decide each rule's inputs,
# params and resources), so a change to them reruns every stage, as it can change any rule
GLUE_FILES = ("Snakefile", "workflow/rules/common.smk")
_SMK_IMPORT = re.compile(r"^\s*(from\s+cpt[\w.]*\s+import\s+[^#\n]+|import\s+cpt[\w.]*)", re.M)


def _glue_imports(root: Path, src: Path) -> set[Path]:
    """Files of the `cpt` modules the Snakefile and common.smk import (Snakemake files are not Python: only their
    import lines are parsed, commented-out ones left out)."""
    files: set[Path] = set()
    for name in GLUE_FILES:
        f = root / name
        if not f.is_file():
            continue
        for m in _SMK_IMPORT.finditer(f.read_text(encoding="utf-8")):
            for node in ast.walk(ast.parse(m.group(1).strip())):
                mods = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                        [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
                        if isinstance(node, ast.ImportFrom) else [])
                files.update(f for f in (_module_file(mod, src) for mod in mods) if f is not None)
    return files


def code_deps(rules: Sequence[str], root: Path = REPO_ROOT) -> list[str]:
    """Scripts of the rules and the library code they and the workflow glue (GLUE_FILES) import: the modules of
    the shared layers they reach (SHARED_LAYERS) and the box packages (src/cpt/<box>) as a whole, with everything
    those run."""
    scripts = rule_scripts(root)
    src = root / "src"
    todo = [root / scripts[r] for r in rules if r in scripts and (root / scripts[r]).is_file()]
    todo.extend(sorted(_glue_imports(root, src)))
    seen: set[Path] = set()
    units: set[str] = set()
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        todo.extend(_imports(f, src) - seen)
        if not f.is_relative_to(src / "cpt") or f.relative_to(src / "cpt").parts == ("__init__.py",):
            continue
        rel = f.relative_to(src / "cpt")
        if len(rel.parts) == 1 or rel.parts[0] in SHARED_LAYERS:
            units.add(str(Path("src", "cpt", *rel.parts)))
            continue
        unit = Path("src", "cpt", rel.parts[0])
        if str(unit) not in units:
            todo.extend(sorted((root / unit).rglob("*.py")))
        units.add(str(unit))
    return sorted({scripts[r] for r in rules if r in scripts}) + sorted(units)


def snakemake_command(configfile: str, profile: str | None = None, options: Sequence[str] = ()) -> str:
    """The Snakemake call of every stage: the experiment's profile (e.g. profiles/slurm: `dvc repro` on a login node
    then submits each rule as a cluster job, as `snakemake --profile` would) and options, before the config."""
    import shlex

    parts = ["snakemake", *(["--profile", profile] if profile else ["--cores", "all"]), *options]
    return " ".join(shlex.quote(p) for p in parts) + f" --configfile {configfile}"


def dvc_yaml(groups: Sequence[Group], configfile: str, wdir: str | None = None, raw: Mapping | None = None,
             profile: str | None = None, options: Sequence[str] = ()) -> dict:
    """The dvc.yaml document. `raw` = the config file as written: DVC reads params from the file itself, so only
    keys present there can be params (values that come from schema defaults are code, not params). Top-level
    `metrics:` and `plots:` (cpt.workflow.dvc_metrics) make `dvc metrics show/diff` and `dvc plots show/diff` work."""
    from cpt.workflow.dvc_metrics import metrics_and_plots

    snakemake = snakemake_command(configfile, profile, options)
    stages = {}
    for g in groups:
        cmd = f"{snakemake} --allowed-rules {' '.join(sorted(g.rules))} -- {' '.join(g.targets)}"
        stage: dict = {"cmd": cmd}
        if wdir:
            stage["wdir"] = wdir
        rule_files = [f for f in (*GLUE_FILES, *g.rule_files) if (REPO_ROOT / f).exists()]
        stage["deps"] = [*g.deps, *rule_files, *code_deps(g.rules)]
        params = [p for p in g.params if raw is None or _present(raw, p)]
        if params:
            stage["params"] = [{configfile: params}]
        stage["outs"] = list(g.outs)
        stages[g.name] = stage
    return {"stages": stages, **metrics_and_plots(groups)}


HEADER = """\
# Generated by `python -m cpt.workflow.dvc --config {configfile}{args}` from the Snakemake DAG of that experiment
# (`snakemake --summary`) and cpt.core.config.Layout. Do not edit by hand: regenerate (tests/dvc checks it is current).
# Each stage runs Snakemake targets; `dvc repro` reproduces the experiment, dvc.lock pins every artifact's hash.
"""


def render(configfile: str, wdir: str | None = None, workdir: str | os.PathLike = REPO_ROOT,
           profile: str | None = None, options: Sequence[str] = ()) -> str:
    cfg = cptconfig.load(Path(workdir) / configfile)
    raw = read_yaml(Path(workdir) / configfile)
    groups = assign_targets(groups_for(cfg), snakemake_outputs(configfile, workdir))
    body = yaml.safe_dump(dvc_yaml(groups, configfile, wdir, raw, profile, options), sort_keys=False, width=200,
                          allow_unicode=True)
    args = "".join(f" {o}" for o in ([f"--profile {profile}"] if profile else []) + [f"--snakemake-option={o}"
                                                                                   for o in options])
    return HEADER.format(configfile=configfile, args=args) + body


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cpt.workflow.dvc", description=__doc__.split("\n")[0])
    p.add_argument("--config", default="config/config.yaml", help="experiment config, relative to the repository")
    p.add_argument("--wdir", default=None, help="wdir of every stage, for a dvc.yaml outside the repository root")
    p.add_argument("--out", default=None, help="write here instead of stdout")
    p.add_argument("--profile", default=None,
                   help="Snakemake profile every stage runs with (e.g. profiles/slurm: `dvc repro` submits jobs)")
    p.add_argument("--snakemake-option", action="append", default=[], metavar="OPT",
                   help="one more Snakemake option for every stage (repeatable), e.g. --snakemake-option=--keep-going")
    p.add_argument("--align-mtimes", action="store_true",
                   help="after `dvc pull` into a working copy where Snakemake ran before: give the outputs DVC "
                        "confirms one common time, so Snakemake does not rerun them (a fresh clone needs no flag)")
    a = p.parse_args(argv)
    if a.align_mtimes:
        aligned = align_checkout_mtimes(".", force=True, log=lambda m: print(m, file=sys.stderr))
        print(f"{len(aligned)} outputs aligned", file=sys.stderr)
        return 0
    text = render(a.config, a.wdir, profile=a.profile, options=a.snakemake_option)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
