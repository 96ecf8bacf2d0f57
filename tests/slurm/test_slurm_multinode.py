"""The N-node test cluster (tests/slurm/start-multinode-slurm.sh: one network + UTS + mount namespace and one
slurmd per node, slurmctld on the host) and cpt.launch across its nodes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

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
