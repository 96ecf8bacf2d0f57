"""After `dvc pull` / `dvc checkout`: give the restored outputs times Snakemake can trust (cpt.workflow.dvc
re-exports `align_checkout_mtimes`; the Snakefile calls it)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

MARKER = Path(".snakemake", "cpt-dvc-checkout.json")
TIMESTAMP = ".snakemake_timestamp"  # Snakemake's mtime carrier of a directory() output


def _dvc_executable() -> str | None:
    import shutil

    return shutil.which("dvc", path=str(Path(sys.executable).parent)) or shutil.which("dvc")


def _mtime_carriers(out: Path) -> list[Path]:
    """What Snakemake reads the time of under a DVC out: the timestamp file of every directory output, and files
    that are outputs themselves (not inside a directory output). Files inside directory outputs are left alone,
    so DVC's hash cache of the big files stays valid."""
    if out.is_file():
        return [out]
    carriers = []
    for dirpath, dirnames, filenames in os.walk(out):
        if TIMESTAMP in filenames:
            carriers.append(Path(dirpath) / TIMESTAMP)
            dirnames[:] = []  # everything below belongs to that directory output
            continue
        carriers.extend(Path(dirpath) / f for f in filenames)
    return carriers


def align_checkout_mtimes(root: str | os.PathLike = ".", force: bool = False, log=None) -> list[str]:
    """Give the outputs that `dvc pull` / `dvc checkout` restored one common modification time.

    DVC restores files in no particular order, so their times say nothing about the DAG, and Snakemake (whose
    default rerun trigger compares input and output times) would plan the whole workflow again. Snakemake's own
    bookkeeping (.snakemake/metadata) is empty in such a checkout, and DVC knows the content: for every DVC stage
    that `dvc status` reports unchanged against dvc.lock, the times Snakemake reads are set to now. Stages DVC
    reports changed keep their times (Snakemake decides). Runs once per dvc.lock (marker in .snakemake/), only
    when Snakemake has no metadata yet (or with force=True); returns the outs aligned."""
    root = Path(root)
    lock = root / "dvc.lock"
    if not lock.is_file() or not (root / ".dvc").is_dir():
        return []
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()
    marker = root / MARKER
    if not force:
        try:
            if json.loads(marker.read_text(encoding="utf-8")).get("dvc_lock_sha256") == digest:
                return []
        except (OSError, ValueError):
            pass
        metadata = root / ".snakemake" / "metadata"
        if metadata.is_dir() and any(metadata.iterdir()):
            return []  # Snakemake made (some of) these outputs here: its times are real
    dvc = _dvc_executable()
    if dvc is None:
        return []
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    r = subprocess.run([dvc, "status", "--json"], cwd=root, capture_output=True, text=True, env=env,
                       timeout=3600)
    try:
        changed = set(json.loads(r.stdout or "{}")) if r.returncode == 0 else None
    except ValueError:
        changed = None
    if changed is None:
        if log:
            log(f"cpt.workflow.dvc: `dvc status` failed ({r.stderr.strip()[-300:]}); output times left as they are")
        return []
    stages = (yaml.safe_load(lock.read_text(encoding="utf-8")) or {}).get("stages", {})
    now = time.time()
    aligned = []
    for name, st in stages.items():
        if name in changed or f"dvc.yaml:{name}" in changed:
            continue
        for out in st.get("outs", []):
            path = root / out["path"]
            if not path.exists():
                continue
            for f in _mtime_carriers(path):
                os.utime(f, (now, now), follow_symlinks=False)
            aligned.append(out["path"])
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"dvc_lock_sha256": digest, "aligned": aligned, "time": now}, indent=2) + "\n",
                      encoding="utf-8")
    if log and aligned:
        log(f"cpt.workflow.dvc: {len(aligned)} DVC-restored outputs match dvc.lock; their times were aligned so "
            f"Snakemake does not rerun them (stages DVC reports changed: {sorted(changed) or 'none'})")
    return aligned
