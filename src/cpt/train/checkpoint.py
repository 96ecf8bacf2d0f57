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
  (previous checkpoints, `latest`) changes. Files get the modes the umask asks for (cpt.locks.honour_umask).
Assumes a file system shared by all ranks (as on a SLURM cluster). Every function that takes a booster or says
"collective" must be called by every rank.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import json
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.distributed as dist

from cpt.errors import CheckpointError
from cpt.locks import honour_umask
from cpt.tokenizer.hf import TOKENIZER_FILES  # the files that travel with a model

LATEST = "latest"
STATE = "state.json"
MANIFEST = "manifest.json"
SCHEDULER = "scheduler.json"
MANIFEST_FORMAT = 1
LOW_SPACE = 1 << 20  # after a failed write, less than this free on the file system = the disk was full
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


# ---- distributed helpers (work in a world of one, too) ---------------------------------------------------------

def _dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def _barrier():
    if _dist():
        dist.barrier()


def _rank() -> int:
    return dist.get_rank() if _dist() else 0


def _world() -> int:
    return dist.get_world_size() if _dist() else 1


def _gather(obj) -> list:
    """Every rank's `obj`, on every rank."""
    if not _dist() or dist.get_world_size() == 1:
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def _broadcast(obj):
    """Rank 0's `obj` on every rank."""
    if not _dist() or dist.get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def step_dir_name(step: int) -> str:
    return f"step-{step:08d}"


def write_text_atomic(path: Path, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _json_value(obj):
    if isinstance(obj, torch.Tensor) and obj.numel() == 1:
        return obj.item()
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, tuple):
        return list(obj)
    raise CheckpointError(f"cannot store a {type(obj).__name__} in a JSON checkpoint file")


def write_json_atomic(path: Path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_value) + "\n")


def read_json(path: Path, what: str = "file") -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing ({what})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc}); the {what} is corrupt") from None


# ---- disk full -----------------------------------------------------------------------------------------------

def _disk_full(exc: BaseException, where: Path) -> bool:
    seen = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in DISK_FULL_ERRNOS:
            return True
        text = str(e)
        if "No space left" in text or "os error 28" in text or "Disk quota exceeded" in text:
            return True
        e = e.__cause__ or e.__context__
    probe = Path(where)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        st = os.statvfs(probe)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < LOW_SPACE


def _free_space(where: Path) -> str:
    probe = Path(where)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        st = os.statvfs(probe)
        return f"{st.f_bavail * st.f_frsize:,} of {st.f_blocks * st.f_frsize:,} bytes free"
    except OSError:
        return "free space unknown"


def _fail_together(error: BaseException | None, tmp: Path, what: str, keeps: str) -> None:
    """Collective: if any rank failed while writing into `tmp`, remove `tmp` and raise one CheckpointError on
    every rank (a full disk reported as ENOSPC with the path)."""
    message = None
    if error is not None:
        if _disk_full(error, tmp):
            message = (f"{tmp}: no space left on device (ENOSPC) while writing the {what} ({_free_space(tmp)}). "
                       f"Free space or use another --output, then rerun: {keeps}")
        else:
            message = f"{tmp}: writing the {what} failed: {type(error).__name__}: {error}. {keeps}"
    messages = [m for m in _gather(message) if m]
    if not messages:
        return
    _barrier()
    if _rank() == 0:
        shutil.rmtree(tmp, ignore_errors=True)
    raise CheckpointError(messages[0] if len(set(messages)) == 1 else " | ".join(dict.fromkeys(messages))) \
        from error


# ---- finite weights ------------------------------------------------------------------------------------------

def check_finite(model, what: str) -> None:
    """Collective: raise CheckpointError on every rank if any parameter (on any rank) holds NaN or Inf."""
    bad = []
    with torch.no_grad():
        for name, p in model.named_parameters():
            n = int((~torch.isfinite(p.detach())).sum())
            if n:
                bad.append(f"{name.removeprefix('module.')} ({n:,} of {p.numel():,} values)")
    reports = [b for r in _gather(bad[:5]) for b in r]
    if reports:
        raise CheckpointError(f"refusing to write the {what}: the weights are not finite (NaN/Inf in "
                              f"{', '.join(dict.fromkeys(reports))}); lower train.lr, check the data, or resume "
                              f"from an earlier checkpoint")


# ---- RNG and scheduler state as JSON -------------------------------------------------------------------------

def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.cpu().numpy().tobytes()).decode("ascii")


def _unb64(s: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8).clone()


def rng_state() -> dict:
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": [version, list(internal), gauss],
             "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
             "torch": _b64(torch.get_rng_state())}
    if torch.cuda.is_available():
        state["cuda"] = [_b64(s) for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(_unb64(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([_unb64(s) for s in state["cuda"]])


def rng_file(rank: int) -> str:
    return f"rng-rank{rank:05d}.json"


# ---- manifest ------------------------------------------------------------------------------------------------

def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(8 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _shares(sizes: dict[str, int], world: int) -> list[list[str]]:
    """Files per rank for hashing: largest first onto the least-loaded rank (deterministic)."""
    load = [0] * world
    out: list[list[str]] = [[] for _ in range(world)]
    for name in sorted(sizes, key=lambda n: (-sizes[n], n)):
        r = min(range(world), key=lambda i: (load[i], i))
        out[r].append(name)
        load[r] += sizes[name]
    return out


def _list_files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != MANIFEST}


def write_manifest(path: Path, step: int) -> None:
    """Collective: hash every file under `path` (shared among ranks); rank 0 writes manifest.json."""
    sizes = _broadcast(_list_files(path) if _rank() == 0 else None)
    mine = _shares(sizes, _world())[_rank()]
    hashes = {}
    for name in _gather({n: sha256_file(path / n) for n in mine}):
        hashes.update(name)
    if _rank() == 0:
        files = {n: {"bytes": sizes[n], "sha256": hashes[n]} for n in sorted(sizes)}
        write_json_atomic(path / MANIFEST, {"format": MANIFEST_FORMAT, "step": step, "files": files})


def _verify_share(path: Path, rank: int, world: int) -> list[str]:
    """This rank's share of the checks of one checkpoint directory; returns the problems found."""
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        files = manifest["files"]
        sizes = {n: int(f["bytes"]) for n, f in files.items()}
    except FileNotFoundError:
        return [f"no {MANIFEST} (an incomplete checkpoint, or one written before checkpoints carried manifests)"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return [f"{MANIFEST} is unreadable ({type(exc).__name__}: {exc})"]
    problems = []
    for name in _shares(sizes, world)[rank]:
        p = path / name
        if not p.is_file():
            problems.append(f"{name}: missing")
            continue
        size = p.stat().st_size
        if size != sizes[name]:
            problems.append(f"{name}: {size:,} bytes, the manifest says {sizes[name]:,} (truncated or replaced)")
        elif sha256_file(p) != files[name].get("sha256"):
            problems.append(f"{name}: content differs from the manifest (sha256 mismatch: overwritten or "
                            f"corrupted on disk)")
    if rank == 0:
        for required in ("model", "optimizer"):
            if not any(n.startswith(required + "/") for n in files):
                problems.append(f"{required}/: not in the manifest")
        if STATE not in files:
            problems.append(f"{STATE}: not in the manifest")
    return problems


def verify_checkpoint(path: str | Path) -> list[str]:
    """Collective: every problem of a checkpoint directory (empty = intact), the hashing shared among ranks."""
    path = Path(path)
    return [p for share in _gather(_verify_share(path, _rank(), _world())) for p in share]


def list_checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoint directories (final names), oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-"))


def latest_checkpoint(root: str | Path) -> Path | None:
    """The directory named by `latest` when it exists (no verification; see find_resume_checkpoint)."""
    pointer = Path(root) / LATEST
    if not pointer.is_file():
        return None
    path = Path(root) / pointer.read_text(encoding="utf-8").strip()
    return path if path.is_dir() else None


def find_resume_checkpoint(root: str | Path, log=print) -> Path | None:
    """Collective: the newest intact checkpoint under `root`, or None when there is none at all.

    Newer checkpoints that fail verification are reported and moved aside to corrupt-<name>-<time>/ (kept); when
    checkpoints exist but none is intact, CheckpointError lists every problem and nothing is moved.
    """
    root = Path(root)
    names = _broadcast([p.name for p in reversed(list_checkpoints(root))] if _rank() == 0 else None)
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
    if _rank() == 0:
        stamp = time.strftime("%Y%m%d%H%M%S")
        for name, problems in failed:
            aside = root / f"corrupt-{name}-{stamp}"
            os.rename(root / name, aside)
            log(f"checkpoint {root / name} is corrupt ({'; '.join(problems[:5])}); moved to {aside.name}/, "
                f"resuming from {chosen}")
        if chosen is not None and (latest_checkpoint(root) is None or latest_checkpoint(root).name != chosen):
            write_text_atomic(root / LATEST, chosen + "\n")
    _barrier()
    return root / chosen if chosen else None


# ---- save / load ---------------------------------------------------------------------------------------------

def save_checkpoint(booster, model, optimizer, scheduler, root: str | Path, step: int, state: dict,
                    keep_last: int, extra_save=None) -> Path:
    """Collective: write step-<step>/ (atomic: temp dir, manifest, rename), move `latest`, keep the last k.
    `extra_save(dir)`: every rank writes its plugin-specific files (the fp32 master weights of ZeRO/AMP
    optimizers, cpt.train.plugins) into the checkpoint before the manifest is made."""
    root = Path(root)
    rank = _rank()
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
    _fail_together(error, tmp, f"checkpoint of step {step}", keeps)
    _barrier()
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
    _fail_together(error, tmp, f"checkpoint of step {step}", keeps)
    _barrier()
    try:
        write_manifest(tmp, step)
        if rank == 0:
            honour_umask(tmp)
    except Exception as exc:  # noqa: BLE001
        error = exc
    _fail_together(error, tmp, f"manifest of the checkpoint of step {step}", keeps)
    if rank == 0:
        if final.exists():  # left over from an attempt that died after renaming but before `latest` moved on
            shutil.rmtree(final)
        os.rename(tmp, final)
        write_text_atomic(root / LATEST, name + "\n")
        for old in list_checkpoints(root)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
        for stale in root.glob(".tmp-step-*"):
            shutil.rmtree(stale, ignore_errors=True)
    _barrier()
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
        set_rng_state(read_json(path / rng_file(_rank()), "RNG state"))
    return state


def export_final(booster, model, hf_config, src_model_dir: str | Path, out_dir: str | Path, dtype: torch.dtype
                 ) -> Path:
    """Collective: write a Hugging Face model directory (safetensors, config, tokenizer files) atomically, after
    checking that every weight is finite."""
    out = Path(out_dir)
    tmp = out.with_name(f".tmp-{out.name}")
    rank = _rank()
    ckpts = list_checkpoints(out.parent / "checkpoints")
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
    _fail_together(error, tmp, f"final model {out}", keeps)
    _barrier()
    try:
        booster.save_model(model, str(tmp), shard=True, use_safetensors=True, size_per_shard=4096)
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
    _fail_together(error, tmp, f"final model {out}", keeps)
    if rank == 0:
        if out.exists():
            shutil.rmtree(out)
        os.rename(tmp, out)
    _barrier()
    return out


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


def reseed(seed: int, rank: int, step: int) -> None:
    """Deterministic per-rank RNG streams after an elastic resume (the saved streams belong to other ranks)."""
    s = (seed * 1_000_003 + step * 7919 + rank) % (2 ** 63)
    random.seed(s)
    np.random.seed(s % (2 ** 32))
    torch.manual_seed(s)
