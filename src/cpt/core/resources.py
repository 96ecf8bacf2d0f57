"""The config's `resources:` section: built-in defaults < `resources.default` < `resources.<rule>`, checked.

What a rule asks a scheduler for (cpt.launch.resources turns it into Snakemake / SLURM resources) and how many
devices training uses (the report's cost projection).
"""

from __future__ import annotations

from typing import Mapping

from cpt.core.errors import ConfigError

# Keys of one `resources.<rule>` section (and of `resources.default`) with their built-in defaults; the same keys
# as workflow/schemas/resources.schema.yaml.
RESOURCE_DEFAULTS: dict = {
    "partition": None,        # sbatch -p
    "account": None,          # sbatch -A
    "nodes": 1,               # sbatch --nodes (training rules only)
    "min_nodes": None,        # training: each retry asks for one node fewer, down to this (None = nodes)
    "nproc_per_node": None,   # ranks per node (torchrun --nproc_per_node); None = gpus_per_node or 1
    "gpus_per_node": 0,       # sbatch --gres=gpu[:model]:N (per node)
    "gpu_model": None,        # e.g. a100; only with gpus_per_node > 0
    "cpus": None,             # threads of a single-process rule (used when cpus_per_task is not given)
    "cpus_per_task": None,    # CPUs per node for training (one SLURM task per node), per job otherwise
    "mem_mb": 2000,           # per node (sbatch --mem)
    "runtime": 60,            # minutes (sbatch -t)
    "constraint": None,       # sbatch -C
    "qos": None,              # sbatch --qos
    "signal_seconds": None,   # ask for SIGUSR1 this many seconds before the time limit (training rules)
    "slurm_extra": "",        # anything else for sbatch, verbatim
}
_INT_KEYS = ("nodes", "min_nodes", "nproc_per_node", "gpus_per_node", "cpus", "cpus_per_task", "mem_mb", "runtime",
             "signal_seconds")


def merge_resources(resources_cfg: Mapping | None, rule: str) -> dict:
    """Built-in defaults < `resources.default` < `resources.<rule>`; unknown keys and bad values are errors."""
    cfg = dict(resources_cfg or {})
    merged = dict(RESOURCE_DEFAULTS)
    for section_name in ("default", rule):
        section = cfg.get(section_name) or {}
        if not isinstance(section, Mapping):
            raise ConfigError(f"resources.{section_name}: expected a mapping of resource settings, got {section!r}")
        for key, value in section.items():
            if key not in RESOURCE_DEFAULTS:
                raise ConfigError(
                    f"resources.{section_name}.{key}: unknown resource setting; known: {', '.join(RESOURCE_DEFAULTS)}"
                )
            merged[key] = value
    for key in _INT_KEYS:
        value = merged[key]
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"resources.{rule}.{key}: expected a non-negative integer, got {value!r}")
    for key in ("nodes", "min_nodes", "nproc_per_node", "cpus", "cpus_per_task", "mem_mb", "runtime"):
        if merged[key] is not None and merged[key] < 1:
            raise ConfigError(f"resources.{rule}.{key}: must be at least 1, got {merged[key]!r}")
    if merged["min_nodes"] is not None and merged["min_nodes"] > merged["nodes"]:
        raise ConfigError(f"resources.{rule}.min_nodes: must be at most resources.{rule}.nodes "
                          f"({merged['nodes']}), got {merged['min_nodes']!r}")
    if merged["nproc_per_node"] is None:
        merged["nproc_per_node"] = merged["gpus_per_node"] or 1
    if merged["cpus_per_task"] is None:
        merged["cpus_per_task"] = merged["cpus"] or 1
    return merged


def nodes_for_attempt(nodes: int, min_nodes: int | None, attempt: int) -> int:
    """Nodes a training job asks for at Snakemake's `attempt` (1 = first submission): `nodes`, one fewer with each
    retry, never fewer than `min_nodes` (None: always `nodes`). After a lost node the retry then fits on the nodes
    that are left, and the trainer resumes its checkpoint on the smaller world (elastic resume)."""
    low = nodes if min_nodes is None else min_nodes
    return max(low, nodes - max(0, int(attempt) - 1))


def configured_keys(resources_cfg: Mapping | None, rule: str) -> set[str]:
    """The resource keys the experiment config itself sets for `rule` (in `resources.default` or
    `resources.<rule>`), as opposed to RESOURCE_DEFAULTS filling in: what a scheduler request must carry, while
    the rest is left to the site (a Snakemake profile's `default-resources`)."""
    cfg = dict(resources_cfg or {})
    keys: set[str] = set()
    for name in ("default", rule):
        section = cfg.get(name) or {}
        if isinstance(section, Mapping):
            keys |= {k for k, v in section.items() if v is not None}
    return keys


def train_devices(resources: Mapping) -> int | None:
    """Devices of the training rule: nodes x (gpus_per_node, or nproc_per_node without GPUs)."""
    r = merge_resources(resources, "train")
    per_node = r["gpus_per_node"] or r["nproc_per_node"]
    return int(r["nodes"]) * int(per_node) if per_node else None
