"""Per-rule Snakemake resources named as snakemake-executor-plugin-slurm reads them, a rule's threads, and the
threads of each training rank."""

from __future__ import annotations

import os
from typing import Mapping

from cpt.core.errors import ConfigError
from cpt.core.resources import configured_keys, merge_resources, nodes_for_attempt

DISTRIBUTED_RULES = ("train",)  # rules whose shell starts its own srun + torchrun (cpt.launch.plan.stage_launcher)


def rule_resources(resources_cfg: Mapping | None, rule: str, distributed: bool | None = None) -> dict:
    """Snakemake `resources:` of a rule, named as snakemake-executor-plugin-slurm reads them: the one mapping of
    config `resources:` that the SLURM request, the rule's `threads` (`rule_threads`), the training rule's
    `nproc` param and the srun + torchrun command line (`stage_launcher`, reading the job's resources) all use.
    `gpus_per_node` implies `nproc_per_node` (one rank per GPU) unless that is set.

    `distributed=True` marks a rule whose shell starts its own `srun` (the training rule, via this module):
    the job asks for `nodes` nodes with one SLURM task each, and the `mpi` key (value 0) tells the SLURM
    jobstep executor not to wrap the rule in `srun -n1` (value 0 keeps the submit side's MPI task checks off).
    Also exposes `nproc_per_node` and `gpus_per_node` so the rule's shell can pass them to `cpt.launch.plan`.
    With `min_nodes` below `nodes`, `nodes` (and the CPU job's `tasks`) is a function of Snakemake's `attempt`
    (nodes_for_attempt: one node fewer per retry, down to min_nodes) and `min_nodes` is exposed, so the launcher
    accepts any allocation of min_nodes..nodes nodes.

    What the scheduler is asked for per job -- `mem_mb`, `runtime`, `cpus_per_task`, partition, account -- is
    only set when the experiment config sets it (`resources.default` or `resources.<rule>`): otherwise the
    Snakemake profile's `default-resources` apply (a resource a rule names always beats them, so filling in
    built-in defaults here would silently override the site's profile).
    """
    if distributed is None:
        distributed = rule in DISTRIBUTED_RULES
    r = merge_resources(resources_cfg, rule)
    given = configured_keys(resources_cfg, rule)
    low = r["min_nodes"] if r["min_nodes"] is not None else r["nodes"]
    nodes = r["nodes"] if low == r["nodes"] else shrinking_nodes(r["nodes"], low)
    if low < r["nodes"] and not distributed:
        raise ConfigError(f"resources.{rule}.min_nodes: only training rules run on several nodes; got {low}")
    out: dict = {
        "nodes": nodes,
        "nproc_per_node": r["nproc_per_node"],
        "gpus_per_node": r["gpus_per_node"],
    }
    if low < r["nodes"]:
        out["min_nodes"] = low
    if given & {"cpus_per_task", "cpus"}:
        out["cpus_per_task"] = r["cpus_per_task"]
    for key in ("mem_mb", "runtime"):
        if key in given:
            out[key] = r[key]
    if r["partition"]:
        out["slurm_partition"] = str(r["partition"])
    if r["account"]:
        out["slurm_account"] = str(r["account"])
    if r["constraint"]:
        out["constraint"] = str(r["constraint"])
    if r["qos"]:
        out["qos"] = str(r["qos"])
    if r["gpus_per_node"]:
        model = f"{r['gpu_model']}:" if r["gpu_model"] else ""
        out["gres"] = f"gpu:{model}{r['gpus_per_node']}"
    extra = []
    if distributed:
        out["mpi"] = 0
        if r["gpus_per_node"]:
            extra.append("--ntasks-per-node=1")
        else:
            out["tasks"] = nodes  # the plugin adds --ntasks=<tasks> to CPU jobs
        # no --no-kill: with it SLURM (22.05, measured on the test cluster) keeps the job running on the nodes
        # left when the node running the batch script is lost -- nothing is left to end it before its time limit.
        # A lost node ends the job (NODE_FAIL); the retry's stage names it (cpt.launch.nodes.vanished_attempt_message)
        if low < r["nodes"]:
            # SLURM's requeue would wait for the same number of nodes; Snakemake's retry asks for fewer
            extra.append("--no-requeue")
    elif r["nodes"] > 1:
        raise ConfigError(f"resources.{rule}.nodes: only training rules run on several nodes; got {r['nodes']}")
    if r["signal_seconds"]:
        extra.append(f"--signal=USR1@{r['signal_seconds']}")
    if r["slurm_extra"]:
        extra.append(str(r["slurm_extra"]).strip())
    if extra:
        out["slurm_extra"] = " ".join(extra)
    return out


def shrinking_nodes(nodes: int, min_nodes: int):
    """A Snakemake resource function: the nodes of the job's `attempt` (cpt.core.resources.nodes_for_attempt)."""

    def nodes_of_attempt(wildcards, attempt):
        return nodes_for_attempt(nodes, min_nodes, attempt)

    return nodes_of_attempt


def rule_threads(resources_cfg: Mapping | None, rule: str) -> int:
    """A rule's Snakemake `threads`, from `rule_resources`: the ranks per node of a distributed rule (what one
    node's torchrun runs), the CPUs of its one task otherwise."""
    rule_resources(resources_cfg, rule)  # the same checks
    r = merge_resources(resources_cfg, rule)
    return int(r["nproc_per_node"] if rule in DISTRIBUTED_RULES else r["cpus_per_task"])


THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def rank_threads_env(env: Mapping[str, str], nproc: int) -> dict[str, str]:
    """The thread settings of each of a rule's `nproc` ranks: the rule's CPUs divided between them, at least 1
    each. The rule's CPUs: a SLURM job's SLURM_CPUS_PER_TASK (resources.train.cpus_per_task, what srun gives the
    task that runs the ranks), else OMP_NUM_THREADS as Snakemake sets it from the rule's threads, else this
    machine's CPUs.

    Passed on unchanged, every rank would run the rule's whole budget of threads: 2 ranks x 2 threads on 2 cores
    trained SmolLM2-135M 4.3x slower than 2 x 1 (docs/benchmarks.md). `launch.env` still wins (it is set on the
    launch command line)."""
    budget = next((int(v) for v in (env.get("SLURM_CPUS_PER_TASK", ""), env.get("OMP_NUM_THREADS", ""))
                   if v.strip().isdigit() and int(v) > 0), None)
    if budget is None:
        budget = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    per_rank = str(max(1, budget // max(1, int(nproc))))
    return {name: per_rank for name in THREAD_VARS}
