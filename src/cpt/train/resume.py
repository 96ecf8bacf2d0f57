"""Resume planning: may this run continue a verified checkpoint, at the same or another world size, and how.

A verified checkpoint (its files match its manifest) is still refused when what it says is impossible or belongs
to another run: state.json fields of the wrong type or out of range (`check_state`: step 10 of 3, step -5), a
step beyond this run's train.max_steps (training cannot go back), another model or dataset than the one it
continues (`lineage`: identities recorded in state.json, compared on resume), other settings. Each is one
CheckpointError naming the file and the field, and what to do.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from cpt.core.errors import CheckpointError
from cpt.train.checkpoint import read_state
from cpt.train.ckpt_io import STATE

# ---- what the checkpoint continues: identities of the model and the dataset ----------------------------------

SAMPLED_ABOVE = 64 << 20  # larger weight files are identified by their size, header and 16 sampled 64 KiB pieces


def _file_digest(path: Path, h) -> None:
    size = path.stat().st_size
    h.update(f"{path.name}\0{size}\0".encode())
    with open(path, "rb") as f:
        if size <= SAMPLED_ABOVE:
            h.update(hashlib.file_digest(f, "sha256").digest())
            return
        head = f.read(1 << 20)  # a safetensors header (names, shapes, dtypes, offsets) is at the start
        h.update(head)
        for i in range(16):
            f.seek(size * i // 16)
            h.update(f.read(64 << 10))


def model_identity(model_dir: str | Path) -> str:
    """sha256 over a model directory's config.json and weight files (large ones sampled): equal for a copy,
    different for another model or other weights of the same shape."""
    d = Path(model_dir)
    h = hashlib.sha256()
    for p in sorted([d / "config.json", *d.glob("*.safetensors"), *d.glob("*.bin")]):
        if p.is_file():
            _file_digest(p, h)
    return h.hexdigest()


def lineage(model_dir: str | Path, dataset_dir: str | Path | None) -> dict:
    """What a run continues, recorded in every checkpoint's state.json: the model and the dataset (its manifest,
    which lists its files), by path and identity."""
    out = {"model": {"path": str(model_dir), "sha256": model_identity(model_dir)}}
    if dataset_dir is not None:
        manifest = Path(dataset_dir) / "manifest.json"
        digest = hashlib.sha256(manifest.read_bytes()).hexdigest() if manifest.is_file() else None
        out["dataset"] = {"path": str(dataset_dir), "sha256": digest}
    return out


def check_lineage(path: Path, saved: dict | None, current: dict | None) -> str:
    """CheckpointError when the checkpoint continues another model or dataset than this run; a note for a
    checkpoint written before lineage was recorded."""
    if current is None:
        return ""
    if not saved:
        return f"{path / STATE} records no lineage (written by an older version): model and dataset not checked"
    for what, option in (("model", "--model"), ("dataset", "--dataset")):
        old, new = saved.get(what) or {}, current.get(what) or {}
        if old and new and old.get("sha256") != new.get("sha256"):
            raise CheckpointError(
                f"{path / STATE}: this checkpoint continues the {what} {old.get('path')} (sha256 "
                f"{str(old.get('sha256'))[:12]}), this run's {option} {new.get('path')} is another one (sha256 "
                f"{str(new.get('sha256'))[:12]}); resuming would silently switch lineage. Pass the same {option}, or "
                f"a fresh --output to start over")
    return ""


# ---- an impossible state ----------------------------------------------------------------------------------------

_INTS = {"step": 0, "tokens": 0, "epoch": 0, "world_size": 1, "total_steps": 0, "accumulation_steps": 1}


def check_state(path: Path, state: object, max_steps: int | None) -> dict:
    """state.json of a verified checkpoint, refused when a field has the wrong type or an impossible value, or
    when its step is beyond this run's train.max_steps."""
    where = path / STATE

    def bad(msg: str) -> CheckpointError:
        return CheckpointError(f"{where}: {msg}; the file is damaged or was edited: remove {path} to resume "
                               f"from the previous checkpoint, or use a fresh --output")

    if not isinstance(state, dict):
        raise bad(f"expected a JSON object, got {type(state).__name__}")
    for key, low in _INTS.items():
        v = state.get(key)
        if key in ("step", "tokens", "world_size") and v is None:
            raise bad(f"field {key!r} is missing")
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < low):
            raise bad(f"field {key!r} must be an integer >= {low}, got {v!r}")
    for key in ("sampler", "config"):
        if not isinstance(state.get(key), dict):
            raise bad(f"field {key!r} must be an object, got {type(state.get(key)).__name__}")
    for key in ("epoch", "micro_step"):
        v = state["sampler"].get(key)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise bad(f"field 'sampler.{key}' must be an integer >= 0, got {v!r}")
    if state.get("total_steps") is not None and state["step"] > state["total_steps"]:
        raise bad(f"step {state['step']} of {state['total_steps']} is impossible")
    if max_steps is not None and state["step"] > max_steps:
        raise CheckpointError(f"{where}: the checkpoint is at step {state['step']} but train.max_steps is "
                              f"{max_steps}; training cannot go back. Raise max_steps to at least {state['step']}, "
                              f"or use a fresh --output to train {max_steps} steps from the start")
    return state

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
                mutable_keys: set[str], run_lineage: dict | None = None) -> ResumePlan:
    """Check that the run may continue the checkpoint at `path` (a possible state, this run's model and dataset:
    `run_lineage` from `lineage`, the same settings); for another data-parallel size (`reshard`: the plugin's
    optimizer checkpoints are resharded on load, e.g. ddp, zero2) keep the global batch of the checkpoint when
    this world can (accumulation_steps scaled), else keep train.accumulation_steps."""
    state = check_state(path, read_state(path), cfg.get("max_steps"))
    old_note = check_lineage(path, state.get("lineage"), run_lineage)
    saved_cfg = state.get("config", {})
    keys = (set(saved_cfg) | set(cfg)) - mutable_keys
    bad = sorted(k for k in keys if saved_cfg.get(k) != cfg.get(k))
    if bad:
        raise CheckpointError(f"{path}: checkpoint was written with different train.{bad}; an exact resume needs "
                              f"the same settings (or use a fresh --output)")
    saved_world, saved_dp = state.get("world_size"), state.get("dp_size", state.get("world_size"))
    accum = int(cfg["accumulation_steps"])
    if saved_world == world and saved_dp == dp_size:
        return ResumePlan(path, state, int(state.get("accumulation_steps", accum)), False, old_note)
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
    return ResumePlan(path, state, new_accum, True, "; ".join(n for n in (note, old_note) if n))
