"""The locked 7B recipe (config/colossal-llama-2-7b.yaml, the published ColossalAI engine) with the CPU smoke
overlay (config/overlays/cpu-smoke.yaml) through `snakemake --profile profiles/slurm` on the 2-node SLURM test
cluster, training on 2 nodes (config/overlays/cluster-2node-smoke.yaml: one rank per node, the smoke's 2 ranks):

- every rule of the DAG runs as a SLURM job (seen by squeue), each as often as the dry run planned, with one kept
  log per job under logs/slurm/rule_<rule>/;
- every train job ran on both nodes (squeue: 2 nodes, node[1-2]; its log: srun over 2 nodes, one torchrun per
  node with --nnodes=2, the rendezvous on node1), every other job on one node;
- the results are those of the local smoke run (tests/workflow/locked.py, shared with test_locked_smoke.py: engine,
  plugin and precision per stage, 69,104 pieces, the replay manifest, every benchmark, the report);
- a rerun after success submits nothing.

One test, one cluster run: every SLURM job costs CI seconds of process start-up on two cores.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fastpoll import SNAKEMAKE
from mnrun import snakemake_env

REPO = Path(__file__).resolve().parents[2]
if str(REPO / "tests") not in sys.path:  # tests/workflow/locked.py, as the workflow tests import it
    sys.path.insert(0, str(REPO / "tests"))
from workflow.locked import OVERLAY, check_plan, check_results, job_counts, make_smoke_inputs  # noqa: E402

# the longest test of the suite (a whole DAG of ~25 SLURM jobs, each a process start-up on two shared cores; 22
# minutes in one CI run where the other worker ran 4-rank tests): its own bound, not the suite's 1,200 s
pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.timeout(2700)]
LOCKED = REPO / "config" / "colossal-llama-2-7b.yaml"
TWO_NODES = REPO / "config" / "overlays" / "cluster-2node-smoke.yaml"
SUBMITTED = re.compile(r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: (\S+)\)\.")


def _snakemake(wd: Path, env: dict, *extra: str) -> subprocess.CompletedProcess:
    cmd = [*SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(wd),
           "--configfile", str(LOCKED), str(OVERLAY), str(TWO_NODES), "--retries", "0", *extra]
    r = subprocess.run(cmd, cwd=wd, env=env, capture_output=True, text=True, timeout=3000)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-6000:]
    return r


def _queued(cluster: dict) -> list[str]:
    """The ids of this run's jobs still queued or running (Snakemake's jobs carry the comment rule_<rule>)."""
    out = subprocess.run(["squeue", "-h", "-o", "%i|%k"], capture_output=True, text=True, timeout=30,
                         env=cluster["env"]).stdout
    return [line.split("|")[0] for line in out.splitlines() if "|rule_" in line]


def test_locked_7b_smoke_runs_its_dag_on_the_two_node_cluster(slurm_multinode, tmp_path):
    env = snakemake_env(slurm_multinode)
    make_smoke_inputs(tmp_path, env)
    plan = job_counts(_snakemake(tmp_path, env, "-n").stdout)
    check_plan(plan, LOCKED)

    jobs: dict[str, list[str]] = {}  # SLURM job id -> [comment (rule_<rule>...), nodes, node list] once it ran
    done = threading.Event()

    def watch():
        while not done.is_set():
            out = subprocess.run(["squeue", "--states=all", "-h", "-o", "%i|%k|%D|%N"], capture_output=True,
                                 text=True, timeout=30, env=slurm_multinode["env"]).stdout
            for line in out.splitlines():
                job, *rest = line.strip().split("|")
                if rest[-1]:  # a node list: the job was allocated
                    jobs[job] = rest
            time.sleep(1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        run = _snakemake(tmp_path, env)
    except BaseException:
        # a failed or timed-out run must not leave its jobs on the nodes the next multi-node tests need
        subprocess.run(["scancel", *jobs, *_queued(slurm_multinode)], capture_output=True, timeout=60,
                       env=slurm_multinode["env"])
        raise
    finally:
        done.set()
        watcher.join()
    text = run.stdout + run.stderr
    submitted = dict(SUBMITTED.findall(text))  # SLURM job id -> its log
    ran: dict[str, int] = {}
    for rule in re.findall(r"Finished jobid: \d+ \(Rule: (\w+)\)", text):
        ran[rule] = ran.get(rule, 0) + 1
    assert ran == plan  # every rule of the DAG ran, each as often as planned; every one but the target `all`
    per_rule: dict[str, int] = {}
    for job, log in submitted.items():
        assert job in jobs, (job, log)  # a SLURM job seen by squeue on its nodes
        comment, nodes, nodelist = jobs[job]
        rule = comment.split("_wildcards_", 1)[0].removeprefix("rule_")
        per_rule[rule] = per_rule.get(rule, 0) + 1
        # one kept log per job: logs/slurm/rule_<rule>[/<wildcards>]/<jobid>.log
        path = Path(log)
        assert path.is_file() and path.name == f"{job}.log" and (tmp_path / "logs" / "slurm") in path.parents
        assert path.relative_to(tmp_path / "logs" / "slurm").parts[0] == f"rule_{rule}"
        if rule == "train":  # on both nodes: one torchrun per node, the rendezvous on the first
            assert (nodes, nodelist) == ("2", "node[1-2]"), (job, nodes, nodelist)
            log_text = path.read_text(encoding="utf-8")
            assert "srun --nodes=2 --ntasks=2" in log_text and "--nnodes=2" in log_text, log_text[-4000:]
            assert "--nproc_per_node=1" in log_text and "--rdzv_endpoint=node1:" in log_text, log_text[-4000:]
        else:
            assert nodes == "1" and nodelist in slurm_multinode["nodes"], (job, comment, nodes, nodelist)
    assert per_rule == {rule: n for rule, n in plan.items() if rule != "all"}, per_rule
    logs = sorted((tmp_path / "logs" / "slurm").rglob("*.log"))
    assert sorted(Path(p) for p in submitted.values()) == logs  # no other job logs

    check_results(tmp_path, LOCKED, engine="colossalai")

    again = _snakemake(tmp_path, env)
    assert "has been submitted with SLURM jobid" not in again.stdout + again.stderr
    assert "Nothing to be done" in again.stdout + again.stderr
