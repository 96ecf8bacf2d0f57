"""dvc.yaml for an experiment: one DVC stage per recipe stage, each running Snakemake targets (no logic twice).

    python -m cpt.dvcstages --config config/config.yaml > dvc.yaml                     # the embedded demo
    python -m cpt.dvcstages --config config/colossal-llama-2-7b.yaml --wdir ../.. \\
        > dvc/colossal-llama-2-7b/dvc.yaml                                          # another experiment

Snakemake stays the only description of how artifacts are made. Each DVC stage's `cmd` is
`snakemake --cores all --configfile <config> --allowed-rules <its rules> <its targets>`, where the targets and
rules come from Snakemake itself (`snakemake --summary`) and are grouped by the results/<experiment>/<stage>
folders of cpt.config.Layout. `--allowed-rules` keeps a DVC stage from re-running another stage's rules (DVC
decides what is out of date, by content hash). Params are the config sections each stage reads, so `dvc repro`
reruns exactly what a changed section affects, and dvc.lock pins the hashes of the raw data archives, the
tokenizers, the initialised model, the dataset shards, every training stage's final checkpoint and the
evaluation results.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import yaml

from cpt import config as cptconfig
from cpt.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]


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
        raise ConfigError(f"snakemake --summary failed for {configfile}:\n{r.stderr[-3000:]}")
    rows = []
    for line in r.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) >= 5 and parts[0] != "output_file":
            rows.append((parts[0], parts[2], parts[4]) if with_status else (parts[0], parts[2]))
    return rows


def _under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def groups_for(config: Mapping) -> list[Group]:
    """The DVC stages of an experiment, in pipeline order, with their outs, deps and params (no targets yet)."""
    L = cptconfig.Layout(config)
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
    groups.append(Group("evaluate", [f"{root}/evaluate"], deps=[corpus, tokenizer, *base_model, str(L.model_init), *finals],
                        params=["evaluate"], rule_files=["workflow/rules/evaluate.smk"]))
    groups.append(Group("report", [str(L.report)], deps=[f"{root}/evaluate", *finals], params=["report"],
                        rule_files=["workflow/rules/report.smk"]))
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
            "these Snakemake outputs lie outside every DVC stage's outs (add them to cpt.dvcstages.groups_for): "
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


def dvc_yaml(groups: Sequence[Group], configfile: str, wdir: str | None = None, raw: Mapping | None = None) -> dict:
    """The dvc.yaml document. `raw` = the config file as written: DVC reads params from the file itself, so only
    keys present there can be params (values that come from schema defaults are code, not params)."""
    stages = {}
    for g in groups:
        cmd = (f"snakemake --cores all --configfile {configfile} --allowed-rules {' '.join(sorted(g.rules))} "
               f"-- {' '.join(g.targets)}")
        stage: dict = {"cmd": cmd}
        if wdir:
            stage["wdir"] = wdir
        rule_files = [f for f in g.rule_files if (REPO_ROOT / f).exists()]
        stage["deps"] = [*g.deps, *rule_files]
        params = [p for p in g.params if raw is None or _present(raw, p)]
        if params:
            stage["params"] = [{configfile: params}]
        stage["outs"] = list(g.outs)
        stages[g.name] = stage
    return {"stages": stages}


HEADER = """\
# Generated by `python -m cpt.dvcstages --config {configfile}` from the Snakemake DAG of that experiment
# (`snakemake --summary`) and cpt.config.Layout. Do not edit by hand: regenerate (tests/dvc checks it is current).
# Each stage runs Snakemake targets; `dvc repro` reproduces the experiment, dvc.lock pins every artifact's hash.
"""


def render(configfile: str, wdir: str | None = None, workdir: str | os.PathLike = REPO_ROOT) -> str:
    cfg = cptconfig.load(Path(workdir) / configfile)
    raw = yaml.safe_load((Path(workdir) / configfile).read_text(encoding="utf-8"))
    groups = assign_targets(groups_for(cfg), snakemake_outputs(configfile, workdir))
    body = yaml.safe_dump(dvc_yaml(groups, configfile, wdir, raw), sort_keys=False, width=200, allow_unicode=True)
    return HEADER.format(configfile=configfile) + body


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cpt.dvcstages", description=__doc__.split("\n")[0])
    p.add_argument("--config", default="config/config.yaml", help="experiment config, relative to the repository")
    p.add_argument("--wdir", default=None, help="wdir of every stage, for a dvc.yaml outside the repository root")
    p.add_argument("--out", default=None, help="write here instead of stdout")
    a = p.parse_args(argv)
    text = render(a.config, a.wdir)
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
