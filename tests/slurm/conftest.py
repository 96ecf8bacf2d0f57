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


def client_env(base: Path) -> dict | None:
    """The environment for a Slurm client call on the single-node cluster, with SLURM_CONF always set (a client
    without SLURM_CONF and without /etc/slurm/slurm.conf falls back to a DNS SRV lookup; no lookup may leave the
    machine): an explicit SLURM_CONF, else our cluster's $base/slurm.conf, else an existing
    /etc/slurm/slurm.conf (a cluster set up by hand). None when there is no config at all: nothing answers then,
    and no client is run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    for conf in (os.environ.get("SLURM_CONF"), base / "slurm.conf", "/etc/slurm/slurm.conf"):
        if conf and Path(conf).is_file():
            env["SLURM_CONF"] = str(conf)
            return env
    return None


def _sinfo_ok(env: dict | None) -> bool:
    if env is None:
        return False
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=15, env=env)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and bool(out.stdout.strip())


def _cluster_name(env: dict) -> str:
    out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=15,
                         env=env).stdout
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
    """Yields {"started": bool, "env": dict} for a live single-node SLURM; `env` (SLURM_CONF set, other SLURM_*
    removed) is the environment for every Slurm client call of a test.

    pytest-xdist workers share one cluster: its state lives in a fixed directory, a lock serialises start and
    stop, and the last worker to finish stops the daemons (only if a worker started them).
    """
    base = Path(os.environ.get("CPT_SLURM_BASE", f"/tmp/cpt-test-slurm-{os.geteuid()}"))
    env = {**os.environ, "SLURM_BASE": str(base), "SLURM_CLUSTER_NAME": TEST_CLUSTER}
    me = base / "users" / str(os.getpid())
    with _locked(base):
        if _sinfo_ok(client_env(base)):
            name = _cluster_name(client_env(base))
            if name != TEST_CLUSTER and os.environ.get("CPT_SLURM_USE_CLUSTER") != "1":
                pytest.skip(f"a SLURM cluster {name!r} answers here; the integration tests submit jobs only to "
                            f"the local test cluster {TEST_CLUSTER!r} (set CPT_SLURM_USE_CLUSTER=1 to use this one)")
        else:
            _start(base, env)
        me.parent.mkdir(parents=True, exist_ok=True)
        me.touch()
    env_client = client_env(base)
    assert env_client is not None, f"the single-node SLURM answers but no slurm.conf was found ({base})"
    try:
        yield {"started": (base / "started-by-fixture").exists(), "env": env_client}
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


# ------------------------------------------------------------------------------------------ N-node cluster

MULTINODE_CLUSTER = "cpt-multinode"
MULTINODE_NODES = 2


@pytest.fixture(scope="session")
def slurm_multinode():
    """Yields a live N-node SLURM on this machine (tests/slurm/start-multinode-slurm.sh): {"conf", "env",
    "nodes", "base"}. `env` is the environment every Slurm client call must get (SLURM_CONF set, other SLURM_*
    removed): without SLURM_CONF a client would fall back to a DNS SRV lookup.

    Network namespaces need root: skipped (with the reason) only where the tests do not run as root or SLURM
    cannot be installed. pytest-xdist workers and concurrent pytest processes share one cluster (lock + one
    marker file per process): one that finds it in use joins it in whatever state its nodes are (never restarts
    it under another's jobs); the last live user to finish stops it. A crashed run's leftovers are removed by the
    next start.
    """
    base = Path(os.environ.get("CPT_SLURM_MN_BASE", f"/tmp/cpt-test-slurm-mn-{os.geteuid()}"))
    conf = base / "slurm.conf"
    script_env = {**os.environ, "SLURM_MN_BASE": str(base), "SLURM_MN_NODES": str(MULTINODE_NODES),
                  "SLURM_MN_CLUSTER": MULTINODE_CLUSTER}
    client_env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    client_env["SLURM_CONF"] = str(conf)
    me = base / "users" / str(os.getpid())
    if os.geteuid() != 0:
        pytest.skip("the multi-node test cluster needs root (network namespaces, slurmd)")
    with _locked(base):
        # a cluster in use (another pytest process or xdist worker is registered and alive) is joined as it is:
        # its nodes may be allocated, or down on purpose (the lost-node test); restarting it would kill that
        # user's jobs. Unused, it is restarted unless every node is idle.
        if not _multinode_up(client_env, in_use=bool(_live_users(base))):
            if not _installed():
                _install_or_skip()
            shutil.rmtree(base / "users", ignore_errors=True)
            r = subprocess.run(["bash", str(HERE / "start-multinode-slurm.sh")], env=script_env, capture_output=True,
                               text=True, timeout=120)
            if r.returncode != 0:
                subprocess.run(["bash", str(HERE / "stop-multinode-slurm.sh")], env=script_env, capture_output=True,
                               timeout=120)
                pytest.fail(f"could not start the multi-node SLURM (start-multinode-slurm.sh):\n{r.stdout}\n{r.stderr}")
        me.parent.mkdir(parents=True, exist_ok=True)
        me.touch()
    try:
        yield {"conf": conf, "env": client_env, "base": base,
               "nodes": [f"node{i}" for i in range(1, MULTINODE_NODES + 1)]}
    finally:
        with _locked(base):
            me.unlink(missing_ok=True)
            if not _live_users(base):
                subprocess.run(["bash", str(HERE / "stop-multinode-slurm.sh")], env=script_env, capture_output=True,
                               timeout=120)


def _multinode_up(env: dict, in_use: bool = False) -> bool:
    """The N-node cluster answers with its N nodes, all idle; `in_use` (another live user): in any state."""
    if not Path(env["SLURM_CONF"]).is_file():
        return False
    try:
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %T"], capture_output=True, text=True, timeout=15,
                             env=env)
    except (OSError, subprocess.TimeoutExpired):
        return False
    states = dict(line.split() for line in out.stdout.splitlines() if line.strip())
    return (out.returncode == 0 and len(states) == MULTINODE_NODES
            and (in_use or all(s == "idle" for s in states.values())))


def _live_users(base: Path) -> list[str]:
    """The registered users (one marker per pytest process: base/users/<pid>) whose process still runs; the
    markers of processes that ended without their teardown (killed) are removed."""
    live = []
    for marker in (base / "users").glob("*") if (base / "users").is_dir() else ():
        try:
            os.kill(int(marker.name), 0)
        except ProcessLookupError:
            marker.unlink(missing_ok=True)
            continue
        except (ValueError, PermissionError):
            pass
        live.append(marker.name)
    return live


def _install_or_skip() -> None:
    if not shutil.which("apt-get") or os.environ.get("CPT_SLURM_NO_INSTALL"):
        pytest.skip("SLURM is not installed and cannot be installed here (needs apt-get); run "
                    "`sudo .ci/slurm-setup.sh --install`")
    r = subprocess.run(["bash", str(REPO / ".ci" / "slurm-setup.sh"), "--install"], capture_output=True, text=True,
                       timeout=600)
    if r.returncode != 0:
        pytest.fail(f"installing SLURM failed (.ci/slurm-setup.sh --install): {r.stderr.strip()[-500:]}")
