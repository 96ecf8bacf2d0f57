"""The N-node test cluster (tests/slurm/start-multinode-slurm.sh: one network + UTS + mount namespace and one
slurmd per node, slurmctld on the host) and cpt.launch across its nodes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cpt.launch.plan import derive_port, ephemeral_range

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def _env(cluster: dict) -> dict:
    env = dict(cluster["env"])
    env["PYTHONPATH"] = str(REPO / "src")
    env["OMP_NUM_THREADS"] = "1"
    return env


def sbatch_wait(env: dict, args: list[str], cwd: Path, timeout: float = 180) -> tuple[str, int]:
    """sbatch ARGS, then poll the job (sbatch --wait polls at up to 30 s intervals); returns (job id, exit code)."""
    r = subprocess.run(["sbatch", "--parsable", *args], capture_output=True, text=True, timeout=60, env=env, cwd=cwd)
    assert r.returncode == 0, r.stderr
    job = r.stdout.strip().split(";")[0]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True, text=True, timeout=30,
                              env=env).stdout
        state = re.search(r"JobState=(\S+)", info)
        if state and state.group(1) not in ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING"):
            return job, int(re.search(r"ExitCode=(\d+):", info).group(1))
        time.sleep(0.2)
    subprocess.run(["scancel", job], env=env, timeout=30)
    raise AssertionError(f"job {job} did not end within {timeout} s")


def test_srun_runs_one_task_on_each_node_with_its_own_hostname_and_network(slurm_multinode):
    r = subprocess.run(["srun", "-N2", "--ntasks-per-node=1", "sh", "-c",
                        'echo "$(hostname) $SLURMD_NODENAME $(ip -o -4 addr show eth0 | awk \'{print $4}\')"'],
                       capture_output=True, text=True, timeout=60, env=slurm_multinode["env"])
    assert r.returncode == 0, r.stderr
    lines = sorted(r.stdout.split("\n")[:-1])
    assert [line.split()[:2] for line in lines] == [["node1", "node1"], ["node2", "node2"]]
    addresses = [line.split()[2] for line in lines]
    assert len(set(addresses)) == 2 and all(a.endswith("/24") for a in addresses)


def test_node_cannot_reach_beyond_the_private_bridge(slurm_multinode):
    """No default route and `hosts: files` in each node: nothing resolves or goes to an outside address."""
    r = subprocess.run(["srun", "-N1", "-w", "node1", "sh", "-c",
                        "ip route; cat /etc/nsswitch.conf; getent hosts example.com || echo unresolved"],
                       capture_output=True, text=True, timeout=60, env=slurm_multinode["env"])
    assert r.returncode == 0, r.stderr
    assert "default" not in r.stdout and "hosts: files\n" in r.stdout and "unresolved" in r.stdout


def test_two_node_torchrun_c10d_gloo_all_reduce(slurm_multinode, tmp_path):
    """cpt.launch inside a 2-node batch job: one torchrun per node (c10d rendezvous), 2 ranks per node."""
    out = tmp_path / "ranks"
    out.mkdir()
    launch = [sys.executable, "-m", "cpt.launch", "--nodes", "2", "--nproc-per-node", "2", "--rdzv-backend", "c10d",
              "--", str(HERE / "allreduce.py"), str(out)]
    _, code = sbatch_wait(_env(slurm_multinode), ["-N2", "--ntasks-per-node=1", "--cpus-per-task=2", "--mem=1000",
                                                  "-o", str(tmp_path / "job.log"), "--wrap", " ".join(launch)],
                          tmp_path)
    log = (tmp_path / "job.log").read_text()
    assert code == 0, log[-3000:]
    ranks = [json.loads((out / f"rank{i}.json").read_text()) for i in range(4)]
    assert [x["world_size"] for x in ranks] == [4] * 4
    assert [x["sum"] for x in ranks] == [10.0] * 4
    assert sorted((x["host"], x["local_rank"]) for x in ranks) == [("node1", 0), ("node1", 1), ("node2", 0),
                                                                   ("node2", 1)]
    assert "--rdzv_endpoint=node1:" in log


LAUNCHES = int(os.environ.get("CPT_PORT_LAUNCHES", "20"))


def test_back_to_back_two_node_launches_never_collide_on_the_rendezvous_port(slurm_multinode, tmp_path):
    """LAUNCHES 2-node jobs queued at once (they run back to back, two at a time, all with node1 as first node and
    batch host), each planned by cpt.launch.plan on node1 while srun's own sockets open there: the port derived
    from the job id lies outside the ephemeral range, so none collides with srun or with the other job."""
    lo, hi = ephemeral_range()
    env = _env(slurm_multinode)
    jobs = []
    for i in range(LAUNCHES):
        r = subprocess.run(["sbatch", "--parsable", "-N2", "--ntasks-per-node=1", "--cpus-per-task=1", "--mem=200",
                            "-o", str(tmp_path / f"job{i}.log"), "--wrap",
                            f"{sys.executable} {HERE / 'port_launch.py'}"],
                           capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        jobs.append(r.stdout.strip())
    deadline = time.monotonic() + 30 + 6 * LAUNCHES
    while time.monotonic() < deadline:
        out = subprocess.run(["squeue", "-h", "-j", ",".join(jobs), "-o", "%i"], capture_output=True, text=True,
                             timeout=30, env=env).stdout
        if not out.strip():
            break
        time.sleep(0.5)
    else:
        subprocess.run(["scancel", *jobs], env=env, timeout=30)
        raise AssertionError("the launches did not finish in time")
    ports = []
    for i, job in enumerate(jobs):
        info = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True, text=True, timeout=30,
                              env=env).stdout
        text = (tmp_path / f"job{i}.log").read_text()
        assert "JobState=COMPLETED" in info and "ExitCode=0:0" in info, f"launch {i} (job {job}):\n{text[-2000:]}"
        port = int(re.search(r"^port (\d+)$", text, re.M).group(1))
        assert f"port {port} served 1 node(s)" in text
        assert "BatchHost=node1" in info and not lo <= port <= hi and port == derive_port(job)
        ports.append(port)
    assert len(ports) == LAUNCHES and len(set(ports)) == LAUNCHES
