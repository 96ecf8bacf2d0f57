"""Checkpoints that can be trusted: safe formats, a manifest of sizes and hashes, verified resume with fallback.

Layout: <output>/checkpoints/step-00000040/{model/, optimizer/, scheduler.json, state.json, rng-rank00000.json,
..., manifest.json} and <output>/checkpoints/latest (a text file holding the directory name).

- Formats: weights in safetensors (the Booster's sharded model save), optimizer shards as the Booster writes them
  (plain tensor files), loaded with torch's weights-only unpickler forced on (TORCH_FORCE_WEIGHTS_ONLY_LOAD), so
  a planted pickle payload is refused, never run; scheduler, training state and RNG states are JSON.
- Integrity: `manifest.json` lists every file with its size and sha256, written last; the directory gets its
  final name (atomic rename) only after that. On resume every file is checked against it (the ranks share the
  hashing). A checkpoint that fails -- truncated, same-size garbage, a file missing -- is reported, moved aside to
  `corrupt-<name>-<time>/` (kept, never deleted) and the newest intact one is used instead.
- Writing: weights with NaN/Inf are refused before a checkpoint or the final export is written; a full disk is
  reported as ENOSPC with the path and the free space, the partial directory is removed and nothing earlier
  (previous checkpoints, `latest`) changes. Files get the modes the umask asks for (cpt.core.locks.honour_umask).
Assumes a file system shared by all ranks (as on a SLURM cluster). Every function that takes a booster or says
"collective" must be called by every rank. `booster` is the training engine (cpt.train.engine: the Booster's
checkpoint methods, or the torch engine's DCP directories under model/ and optimizer/).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path
from typing import Iterator

import torch

from cpt.artifacts.stagedir import StageDir
from cpt.core.errors import CheckpointError
from cpt.core.locks import honour_umask
from cpt.tokenizer.hf import TOKENIZER_FILES  # the files that travel with a model
from cpt.train.ckpt_io import (
    LATEST,
    MANIFEST,
    SCHEDULER,
    STATE,
    barrier,
    broadcast,
    fail_together,
    gather,
    get_rank,
    read_json,
    sha256_file,
    step_dir_name,
    verify_checkpoint,
    write_json_atomic,
    write_manifest,
    write_text_atomic,
)
from cpt.train.rng import rng_file, rng_state, set_rng_state

# ---- finite weights ------------------------------------------------------------------------------------------

def check_finite(model, what: str) -> None:
    """Collective: raise CheckpointError on every rank if any parameter (on any rank) holds NaN or Inf."""
    bad = []
    with torch.no_grad():
        for name, p in model.named_parameters():
            local = p.to_local() if hasattr(p, "to_local") else p  # a DTensor shard (torch engine, FSDP2): this rank's
            n = int((~torch.isfinite(local.detach())).sum())
            if n:
                bad.append(f"{name.removeprefix('module.')} ({n:,} of {p.numel():,} values)")
    reports = [b for r in gather(bad[:5]) for b in r]
    if reports:
        raise CheckpointError(f"refusing to write the {what}: the weights are not finite (NaN/Inf in "
                              f"{', '.join(dict.fromkeys(reports))}); lower train.lr, check the data, or resume "
                              f"from an earlier checkpoint")


def list_checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoint directories (final names), oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-"))


def latest_checkpoint(root: str | Path) -> Path | None:
    """The directory named by `latest` when it exists (no verification; see find_resume_checkpoint)."""
    pointer = Path(root) / LATEST
    try:  # damaged (not UTF-8, a path elsewhere): None; find_resume_checkpoint scans the directories and rewrites it
        name = pointer.read_bytes().decode("utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not name.startswith("step-") or "/" in name or "\0" in name:
        return None
    path = Path(root) / name
    return path if path.is_dir() else None


def find_resume_checkpoint(root: str | Path, log=print) -> Path | None:
    """Collective: the newest intact checkpoint under `root`, or None when there is none at all.

    Newer checkpoints that fail verification are reported and moved aside to corrupt-<name>-<time>/ (kept); when
    checkpoints exist but none is intact, CheckpointError lists every problem and nothing is moved.
    """
    root = Path(root)
    names = broadcast([p.name for p in reversed(list_checkpoints(root))] if get_rank() == 0 else None)
    failed: list[tuple[str, list[str]]] = []
    chosen = None
    for name in names:
        problems = verify_checkpoint(root / name)
        if not problems:
            chosen = name
            break
        failed.append((name, problems))
    if chosen is None and failed:
        details = "; ".join(f"{n}: {', '.join(p[:3])}" for n, p in failed)
        raise CheckpointError(f"{root}: no intact checkpoint to resume from ({details}). Restore them, or move "
                              f"{root} away to start the stage over")
    if get_rank() == 0:
        stamp = time.strftime("%Y%m%d%H%M%S")
        for name, problems in failed:
            aside = root / f"corrupt-{name}-{stamp}"
            os.rename(root / name, aside)
            log(f"checkpoint {root / name} is corrupt ({'; '.join(problems[:5])}); moved to {aside.name}/, "
                f"resuming from {chosen}")
        if chosen is not None and (latest_checkpoint(root) is None or latest_checkpoint(root).name != chosen):
            write_text_atomic(root / LATEST, chosen + "\n")
    barrier()
    return root / chosen if chosen else None


# ---- save / load ---------------------------------------------------------------------------------------------

def save_checkpoint(booster, model, optimizer, scheduler, root: str | Path, step: int, state: dict,
                    keep_last: int, extra_save=None) -> Path:
    """Collective: write step-<step>/ (atomic: temp dir, manifest, rename), move `latest`, keep the last k.
    `extra_save(dir)`: every rank writes its plugin-specific files (the fp32 master weights of ZeRO/AMP
    optimizers, cpt.train.plugins) into the checkpoint before the manifest is made."""
    root = Path(root)
    rank = get_rank()
    name = step_dir_name(step)
    tmp = root / f".tmp-{name}"
    final = root / name
    previous = latest_checkpoint(root)
    keeps = (f"the previous checkpoint {previous} is intact and `latest` still names it" if previous else
             "no checkpoint was written yet; the run starts over")
    check_finite(model, f"checkpoint of step {step}")
    error = None
    try:
        if rank == 0:
            root.mkdir(parents=True, exist_ok=True)
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir()
    except OSError as exc:
        error = exc
    fail_together(error, tmp, f"checkpoint of step {step}", keeps)
    barrier()
    try:
        booster.save_model(model, str(tmp / "model"), shard=True, use_safetensors=True)
        booster.save_optimizer(optimizer, str(tmp / "optimizer"), shard=True)
        write_json_atomic(tmp / rng_file(rank), rng_state())
        if extra_save is not None:
            extra_save(tmp)
        if rank == 0:
            write_json_atomic(tmp / SCHEDULER, scheduler.state_dict())
            write_json_atomic(tmp / STATE, state)
    except Exception as exc:  # noqa: BLE001 - reported with the path (and as ENOSPC when the disk is full)
        error = exc
    fail_together(error, tmp, f"checkpoint of step {step}", keeps)
    barrier()
    try:
        write_manifest(tmp, step)
        if rank == 0:
            honour_umask(tmp)
    except Exception as exc:  # noqa: BLE001
        error = exc
    fail_together(error, tmp, f"manifest of the checkpoint of step {step}", keeps)
    if rank == 0:
        if final.exists():  # left over from an attempt that died after renaming but before `latest` moved on
            shutil.rmtree(final)
        os.rename(tmp, final)
        write_text_atomic(root / LATEST, name + "\n")
        for old in list_checkpoints(root)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
        for stale in root.glob(".tmp-step-*"):
            shutil.rmtree(stale, ignore_errors=True)
    barrier()
    return final


def mark_preempted(path: str | Path) -> None:
    """Rank 0: set state.json's "preempted" flag of a written checkpoint (the manifest entry follows)."""
    path = Path(path)
    state = read_json(path / STATE, "training state")
    state["preempted"] = True
    write_json_atomic(path / STATE, state)
    manifest = read_json(path / MANIFEST, "manifest")
    manifest["files"][STATE] = {"bytes": (path / STATE).stat().st_size, "sha256": sha256_file(path / STATE)}
    write_json_atomic(path / MANIFEST, manifest)


@contextlib.contextmanager
def weights_only_loads() -> Iterator[None]:
    """torch.load inside the block uses the weights-only unpickler, whatever the caller (ColossalAI) asks for."""
    saved = {k: os.environ.get(k) for k in ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")}
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _load_part(path: Path, part: str, fn) -> None:
    import pickle

    try:
        with weights_only_loads():
            fn()
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path / part}: refused to load: a file holds more than plain tensors ({first}). Loading it could run "
            f"code; the checkpoint may have been tampered with. Remove {path} (older checkpoints are used then) or "
            f"restore it from a trusted copy") from None
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - verified files that still do not fit this model/optimizer
        raise CheckpointError(f"{path / part}: cannot be loaded into this run ({type(exc).__name__}: {exc}); "
                              f"the checkpoint was written for another model or optimizer setting") from exc


def read_state(path: str | Path) -> dict:
    return read_json(Path(path) / STATE, "training state")


def load_checkpoint(booster, model, optimizer, scheduler, path: str | Path, load_rng: bool = True,
                    extra_load=None) -> dict:
    """Collective: restores model, optimizer, scheduler (and this rank's RNG when load_rng); returns state.json.
    The checkpoint must have passed verify_checkpoint (find_resume_checkpoint does that). `extra_load(dir)` runs
    after the optimizer is loaded (plugin-specific files written by save_checkpoint's extra_save)."""
    path = Path(path)
    state = read_state(path)
    _load_part(path, "model", lambda: booster.load_model(model, str(path / "model")))
    if optimizer is not None:
        _load_part(path, "optimizer", lambda: booster.load_optimizer(optimizer, str(path / "optimizer")))
        if extra_load is not None:
            _load_part(path, "master weights", lambda: extra_load(path))
    if scheduler is not None:
        scheduler.load_state_dict(read_json(path / SCHEDULER, "scheduler state"))
    if load_rng:
        set_rng_state(read_json(path / rng_file(get_rank()), "RNG state"))
    return state


def export_final(booster, model, hf_config, src_model_dir: str | Path, out_dir: str | Path, dtype: torch.dtype
                 ) -> Path:
    """Collective: write a Hugging Face model directory (safetensors, config, tokenizer files) atomically, after
    checking that every weight is finite."""
    out = Path(out_dir)
    tmp = out.with_name(f".tmp-{out.name}")
    rank = get_rank()
    ckpts = list_checkpoints(StageDir(out.parent).checkpoints)
    keeps = (f"the last checkpoint {ckpts[-1]} is intact; rerunning exports from it" if ckpts else
             "rerun the same command to train again")
    check_finite(model, f"final model {out}")
    error = None
    try:
        if rank == 0:
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)
    except OSError as exc:
        error = exc
    fail_together(error, tmp, f"final model {out}", keeps)
    barrier()
    try:
        booster.export_model(model, str(tmp))  # the engine (cpt.train.engine): HF safetensors shards
        if rank == 0:
            cfg = hf_config.__class__.from_dict(hf_config.to_dict())
            cfg.torch_dtype = dtype
            cfg.use_cache = True
            cfg.save_pretrained(tmp)
            src = Path(src_model_dir)
            if (src / "generation_config.json").is_file():
                shutil.copy2(src / "generation_config.json", tmp / "generation_config.json")
            for name in TOKENIZER_FILES:
                if (src / name).is_file():
                    shutil.copy2(src / name, tmp / name)
            honour_umask(tmp)
    except Exception as exc:  # noqa: BLE001
        error = exc
    fail_together(error, tmp, f"final model {out}", keeps)
    if rank == 0:
        if out.exists():
            shutil.rmtree(out)
        os.rename(tmp, out)
    barrier()
    return out
