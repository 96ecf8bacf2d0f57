"""The file layer of checkpoints: collective helpers that also work in a world of one, atomic writes, JSON state,
disk-full reporting, and the manifest of sizes and sha256 hashes (written last, verified on resume, the ranks
sharing the hashing). cpt.train.checkpoint builds save / load / resume on it."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from cpt.artifacts.stagedir import CHECKPOINT_MANIFEST as MANIFEST
from cpt.artifacts.stagedir import LATEST, SCHEDULER, STATE  # noqa: F401 (the checkpoint files' names)
from cpt.core.atomic import write_text_atomic
from cpt.core.disk import DISK_FULL_ERRNOS, LOW_SPACE, disk_full, free_space  # noqa: F401 (also used from here)
from cpt.core.errors import CheckpointError

MANIFEST_FORMAT = 1


# ---- distributed helpers (work in a world of one, too) ---------------------------------------------------------

def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def barrier():
    if is_distributed():
        dist.barrier()


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world() -> int:
    return dist.get_world_size() if is_distributed() else 1


def gather(obj) -> list:
    """Every rank's `obj`, on every rank."""
    if not is_distributed() or dist.get_world_size() == 1:
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj):
    """Rank 0's `obj` on every rank."""
    if not is_distributed() or dist.get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def step_dir_name(step: int) -> str:
    return f"step-{step:08d}"


def json_value(obj):
    if isinstance(obj, torch.Tensor) and obj.numel() == 1:
        return obj.item()
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, tuple):
        return list(obj)
    raise CheckpointError(f"cannot store a {type(obj).__name__} in a JSON checkpoint file")


def write_json_atomic(path: Path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=json_value) + "\n")


def read_json(path: Path, what: str = "file") -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing ({what})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc}); the {what} is corrupt") from None


# ---- disk full -----------------------------------------------------------------------------------------------

def fail_together(error: BaseException | None, tmp: Path, what: str, keeps: str) -> None:
    """Collective: if any rank failed while writing into `tmp`, remove `tmp` and raise one CheckpointError on
    every rank (a full disk reported as ENOSPC with the path)."""
    message = None
    if error is not None:
        if disk_full(error, tmp):
            message = (f"{tmp}: no space left on device (ENOSPC) while writing the {what} ({free_space(tmp)}). "
                       f"Free space or use another --output, then rerun: {keeps}")
        else:
            message = f"{tmp}: writing the {what} failed: {type(error).__name__}: {error}. {keeps}"
    messages = [m for m in gather(message) if m]
    if not messages:
        return
    barrier()
    if get_rank() == 0:
        shutil.rmtree(tmp, ignore_errors=True)
    raise CheckpointError(messages[0] if len(set(messages)) == 1 else " | ".join(dict.fromkeys(messages))) \
        from error



# ---- manifest ------------------------------------------------------------------------------------------------

def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def shares(sizes: dict[str, int], world: int) -> list[list[str]]:
    """Files per rank for hashing: largest first onto the least-loaded rank (deterministic)."""
    load = [0] * world
    out: list[list[str]] = [[] for _ in range(world)]
    for name in sorted(sizes, key=lambda n: (-sizes[n], n)):
        r = min(range(world), key=lambda i: (load[i], i))
        out[r].append(name)
        load[r] += sizes[name]
    return out


def list_files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != MANIFEST}


def write_manifest(path: Path, step: int) -> None:
    """Collective: hash every file under `path` (shared among ranks); rank 0 writes manifest.json."""
    sizes = broadcast(list_files(path) if get_rank() == 0 else None)
    mine = shares(sizes, get_world())[get_rank()]
    hashes = {}
    for name in gather({n: sha256_file(path / n) for n in mine}):
        hashes.update(name)
    if get_rank() == 0:
        files = {n: {"bytes": sizes[n], "sha256": hashes[n]} for n in sorted(sizes)}
        write_json_atomic(path / MANIFEST, {"format": MANIFEST_FORMAT, "step": step, "files": files})


def verify_share(path: Path, rank: int, world: int) -> list[str]:
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
    for name in shares(sizes, world)[rank]:
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
    return [p for share in gather(verify_share(path, get_rank(), get_world())) for p in share]
