"""Resume planning: may this run continue a verified checkpoint, at the same or another world size, and how."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cpt.core.errors import CheckpointError
from cpt.train.checkpoint import read_state

# ---- resume planning (same or another world size) ------------------------------------------------------------

@dataclass
class ResumePlan:
    """How to continue from a verified checkpoint in this run's world."""

    path: Path
    state: dict
    accumulation_steps: int      # micro batches per optimizer step in this run
    elastic: bool                # written by another data-parallel size: resharded, RNG reseeded
    note: str = ""


def plan_resume(path: Path, cfg: dict, world: int, dp_size: int, reshard: bool, plugin: str,
                mutable_keys: set[str]) -> ResumePlan:
    """Check that the run may continue the checkpoint at `path`; for another data-parallel size (`reshard`: the
    plugin's optimizer checkpoints are resharded on load, e.g. ddp, zero2) keep the global batch of the
    checkpoint when this world can (accumulation_steps scaled), else keep train.accumulation_steps."""
    state = read_state(path)
    saved_cfg = state.get("config", {})
    keys = (set(saved_cfg) | set(cfg)) - mutable_keys
    bad = sorted(k for k in keys if saved_cfg.get(k) != cfg.get(k))
    if bad:
        raise CheckpointError(f"{path}: checkpoint was written with different train.{bad}; an exact resume needs "
                              f"the same settings (or use a fresh --output)")
    saved_world, saved_dp = state.get("world_size"), state.get("dp_size", state.get("world_size"))
    accum = int(cfg["accumulation_steps"])
    if saved_world == world and saved_dp == dp_size:
        return ResumePlan(path, state, int(state.get("accumulation_steps", accum)), False)
    if not reshard:
        raise CheckpointError(f"{path}: written by {saved_world} processes, this run has {world}; plugin {plugin} "
                              f"cannot reshard its checkpoints: resume with {saved_world} processes")
    micro = int(cfg["micro_batch_size"])
    saved_accum = int(state.get("accumulation_steps", saved_cfg.get("accumulation_steps", accum)))
    global_batch = micro * int(saved_dp) * saved_accum
    if global_batch % (micro * dp_size) == 0:
        new_accum = global_batch // (micro * dp_size)
        how = (f"accumulation_steps {saved_accum} -> {new_accum} keeps the global batch of {global_batch} "
               f"sequences")
    else:
        new_accum = accum
        how = (f"the global batch changes from {global_batch} to {micro * dp_size * accum} sequences ({global_batch}"
               f" is not a multiple of micro_batch_size x {dp_size} ranks)")
    position = (state.get("sampler") or {}).get("position")
    where = f"sample {position:,} of epoch {state.get('epoch', 0)}" if position is not None else "the same sample"
    note = (f"elastic resume: the checkpoint was written by {saved_world} processes ({saved_dp} data-parallel), "
            f"this run has {world} ({dp_size}); optimizer state resharded by the {plugin} plugin, data continues "
            f"at {where} of the bucket order, {how}; RNG streams reseeded")
    return ResumePlan(path, state, new_accum, True, note)
