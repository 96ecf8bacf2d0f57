"""A real SLURM for the integration tests.

Order of preference:
1. a controller already answers (`sinfo`), e.g. started by .ci/slurm-setup.sh: use it, leave it running.
   Only our own single-node test cluster (ClusterName cpt-local) is used unless CPT_SLURM_USE_CLUSTER=1, so the
   tests never submit to a production cluster by accident.
2. slurmctld is installed and we are root: start slurmctld + slurmd + munged for the session (shared by the
   pytest-xdist workers), stop them after.
3. not installed, root and apt-get here (and CPT_SLURM_NO_INSTALL unset): `.ci/slurm-setup.sh --install`, then 2.
Otherwise the tests are skipped with the reason.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
TEST_CLUSTER = "cpt-local"


def _sinfo_ok() -> bool:
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and bool(out.stdout.strip())


def _cluster_name() -> str:
    out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=15).stdout
    for line in out.splitlines():
        if line.strip().startswith("ClusterName"):
            return line.split("=", 1)[1].strip()
    return ""


def _installed() -> bool:
    return bool(shutil.which("slurmctld") or Path("/usr/sbin/slurmctld").exists())


@contextlib.contextmanager
def _locked(base: Path):
    base.mkdir(parents=True, exist_ok=True)
    with open(base / "fixture.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def slurm_cluster():
    """Yields {"started": bool} for a live single-node SLURM.

    pytest-xdist workers share one cluster: its state lives in a fixed directory, a lock serialises start and
    stop, and the last worker to finish stops the daemons (only if a worker started them).
    """
    base = Path(os.environ.get("CPT_SLURM_BASE", f"/tmp/cpt-test-slurm-{os.geteuid()}"))
    env = {**os.environ, "SLURM_BASE": str(base), "SLURM_CLUSTER_NAME": TEST_CLUSTER}
    me = base / "users" / str(os.getpid())
    with _locked(base):
        if _sinfo_ok():
            name = _cluster_name()
            if name != TEST_CLUSTER and os.environ.get("CPT_SLURM_USE_CLUSTER") != "1":
                pytest.skip(f"a SLURM cluster {name!r} answers here; the integration tests submit jobs only to "
                            f"the local test cluster {TEST_CLUSTER!r} (set CPT_SLURM_USE_CLUSTER=1 to use this one)")
        else:
            _start(base, env)
        me.parent.mkdir(parents=True, exist_ok=True)
        me.touch()
    try:
        yield {"started": (base / "started-by-fixture").exists()}
    finally:
        with _locked(base):
            me.unlink(missing_ok=True)
            if (base / "started-by-fixture").exists() and not any((base / "users").iterdir()):
                subprocess.run(["bash", str(HERE / "stop-local-slurm.sh")], env=env, capture_output=True,
                               timeout=60)
                (base / "started-by-fixture").unlink()


def _start(base: Path, env: dict) -> None:
    is_root = os.geteuid() == 0
    if not _installed():
        if not (is_root and shutil.which("apt-get")) or os.environ.get("CPT_SLURM_NO_INSTALL"):
            pytest.skip("SLURM is not installed and cannot be installed here (needs root and apt-get); "
                        "run `sudo .ci/slurm-setup.sh` to install and start a local single-node SLURM")
        r = subprocess.run(["bash", str(REPO / ".ci" / "slurm-setup.sh"), "--install"], capture_output=True,
                           text=True, timeout=600)
        if r.returncode != 0:
            pytest.skip(f"installing SLURM failed (.ci/slurm-setup.sh --install): {r.stderr.strip()[-500:]}")
    if not is_root:
        pytest.skip("SLURM is installed but not running, and starting slurmd needs root; "
                    "run `sudo .ci/slurm-setup.sh` first")
    r = subprocess.run(["bash", str(HERE / "start-local-slurm.sh")], env=env, capture_output=True, text=True,
                       timeout=120)
    if r.returncode != 0:
        subprocess.run(["bash", str(HERE / "stop-local-slurm.sh")], env=env, capture_output=True, timeout=60)
        pytest.fail(f"could not start the local SLURM (tests/slurm/start-local-slurm.sh):\n{r.stdout}\n{r.stderr}")
    (base / "started-by-fixture").touch()
