"""A node lost mid-training, a hung rank: resources.train.min_nodes (fewer nodes per retry), the launcher accepting
an allocation of min_nodes..nodes, the stage naming failed nodes (cpt.launch.nodes), the trainer naming hung or gone
ranks with their node (cpt.train.peers). The cluster runs are tests/slurm/test_slurm_multinode_faults.py."""

from __future__ import annotations

import os
import threading
import time

import pytest

from cpt.core.errors import ConfigError, TrainError
from cpt.core.resources import nodes_for_attempt
from cpt.launch.nodes import (attempt_record, describe_failed, failed_nodes, is_failed, lost_nodes_message, parse_nodes,
                              vanished_attempt_message)
from cpt.launch.plan import LaunchSpec, plan_launch
from cpt.launch.resources import rule_resources


def test_nodes_shrink_by_one_per_attempt_down_to_min_nodes():
    assert [nodes_for_attempt(8, 6, a) for a in (1, 2, 3, 4, 5)] == [8, 7, 6, 6, 6]
    assert [nodes_for_attempt(2, None, a) for a in (1, 2, 3)] == [2, 2, 2]


def test_rule_resources_with_min_nodes_ask_fewer_nodes_on_each_retry():
    r = rule_resources({"train": {"nodes": 2, "min_nodes": 1, "nproc_per_node": 2}}, "train")
    assert r["nodes"](None, attempt=1) == 2 and r["nodes"](None, attempt=2) == 1  # Snakemake passes `attempt`
    assert r["tasks"] is r["nodes"] and r["min_nodes"] == 1 and r["nproc_per_node"] == 2
    # SLURM must not requeue it for the same 2 nodes (the retry asks for 1); no --no-kill (a lost node ends the job)
    assert r["slurm_extra"].split() == ["--no-requeue"]
    fixed = rule_resources({"train": {"nodes": 2, "min_nodes": 2}}, "train")
    assert fixed["nodes"] == 2 and "min_nodes" not in fixed and "--no-requeue" not in fixed.get("slurm_extra", "")


@pytest.mark.parametrize("section, match", [
    ({"train": {"nodes": 2, "min_nodes": 3}}, r"resources\.train\.min_nodes: must be at most resources\.train"
                                              r"\.nodes \(2\), got 3"),
    ({"train": {"nodes": 2, "min_nodes": 0}}, r"resources\.train\.min_nodes: must be at least 1"),
    ({"train": {"nodes": 2, "min_nodes": "1-2"}}, r"resources\.train\.min_nodes: expected a non-negative integer"),
])
def test_bad_min_nodes_is_a_config_error_naming_the_key(section, match):
    with pytest.raises(ConfigError, match=match):
        rule_resources(section, "train")


def test_only_training_rules_shrink():
    with pytest.raises(ConfigError, match=r"resources\.dataset\.(min_)?nodes"):
        rule_resources({"dataset": {"nodes": 2, "min_nodes": 1}}, "dataset")


def _hosts(nodelist):
    return lambda argv: " ".join(nodelist) if argv[:3] == ["scontrol", "show", "hostnames"] else ""


def test_the_launcher_accepts_any_allocation_between_min_nodes_and_nodes():
    spec = LaunchSpec(nproc_per_node=2, nodes=2, min_nodes=1)
    env = {"SLURM_JOB_ID": "7", "SLURM_JOB_NODELIST": "n1", "SLURMD_NODENAME": "n1"}
    plan = plan_launch(env, spec, ["t.py"], run=_hosts(["n1"]), bindable=lambda p: True)
    assert plan.hosts == ["n1"] and "--nnodes=1" in plan.argv[-1] and "--nproc_per_node=2" in plan.argv[-1]
    three = {**env, "SLURM_JOB_NODELIST": "n[1-3]"}
    with pytest.raises(TrainError, match=r"has 3 node\(s\) \(n1,n2,n3\) but 1 to 2 \(resources\.train\.min_nodes\)"):
        plan_launch(three, spec, ["t.py"], run=_hosts(["n1", "n2", "n3"]), bindable=lambda p: True)


SCONTROL_NODES = (
    "NodeName=node1 Arch=x86_64 CPUTot=2 State=ALLOCATED ThreadsPerCore=1 Partitions=debug\n"
    "NodeName=node2 Arch=x86_64 CPUTot=2 State=DOWN+NOT_RESPONDING ThreadsPerCore=1 "
    "Reason=Not responding [root@2026-12-07T22:51:41]\n"
)


def test_parse_nodes_and_failed_states():
    nodes = parse_nodes(SCONTROL_NODES)
    assert nodes["node1"] == {"state": "ALLOCATED", "reason": ""}
    assert nodes["node2"] == {"state": "DOWN+NOT_RESPONDING", "reason": "Not responding [root@2026-12-07T22:51:41]"}
    assert [s for s in ("IDLE", "MIXED", "ALLOCATED*", "DOWN", "IDLE+DRAIN", "FAIL", "MIXED+NOT_RESPONDING")
            if is_failed(s)] == ["ALLOCATED*", "DOWN", "FAIL", "MIXED+NOT_RESPONDING"]


def test_lost_nodes_message_names_the_failed_node_of_the_launch():
    calls = []

    def run(argv):
        calls.append(argv)
        return SCONTROL_NODES

    msg = lost_nodes_message({"SLURM_JOB_ID": "12"}, ["node1", "node2"], run=run)
    assert msg == ("node node2 (State=DOWN+NOT_RESPONDING, Reason=Not responding [root@2026-12-07T22:51:41]) of "
                   "SLURM job 12 failed")
    assert calls == [["scontrol", "show", "node", "-o", "node1,node2"]]  # the launch's nodes, not the job's now
    assert lost_nodes_message({}, ["node1", "node2"], run=run) is None  # not in a SLURM job
    assert lost_nodes_message({"SLURM_JOB_ID": "12"}, ["node1"], run=run) is None  # one node: nothing to lose


def test_failed_nodes_asks_again_until_the_wait_ends_and_never_raises():
    healthy = "NodeName=a State=IDLE\nNodeName=b State=MIXED\n"
    sleeps = []
    assert failed_nodes(["a", "b"], lambda argv: healthy, wait_s=0.05, sleep=lambda s: sleeps.append(s) or
                        time.sleep(0.03)) == {}
    assert sleeps  # it asked more than once

    def broken(argv):
        raise OSError("no scontrol")

    assert failed_nodes(["a", "b"], broken) == {}
    assert "nodes a (State=DOWN), b (State=FAIL) of SLURM job ? failed" == describe_failed(
        {"b": {"state": "FAIL", "reason": ""}, "a": {"state": "DOWN", "reason": ""}}, None)


def test_an_attempt_that_never_closed_its_launch_record_is_named_by_the_next_one():
    import subprocess

    rec = attempt_record({"SLURM_JOB_ID": "12"}, ["node1", "node2"], started=100.0)
    assert rec["slurm_job_id"] == "12" and rec["hosts"] == ["node1", "node2"] and rec["pid"] == os.getpid()
    down = ("NodeName=node1 State=DOWN+NOT_RESPONDING Reason=Not responding [slurm@2026-12-08T03:00:00]\n"
            "NodeName=node2 State=ALLOCATED\n")
    calls = []

    def run(argv):
        calls.append(argv)
        if argv[:3] == ["scontrol", "show", "job"]:
            return "JobId=12 JobName=x JobState=NODE_FAIL Reason=NodeDown NodeList=node[1-2]"
        return down

    msg = vanished_attempt_message(rec, {"SLURM_JOB_ID": "13"}, run=run)
    assert msg == ("the previous attempt (SLURM job 12 on node1, node2) ended without its launch returning: SLURM "
                   "JobState=NODE_FAIL; node node1 (State=DOWN+NOT_RESPONDING, Reason=Not responding "
                   "[slurm@2026-12-08T03:00:00]) of SLURM job 12 failed")
    assert calls == [["scontrol", "show", "job", "-o", "12"], ["scontrol", "show", "node", "-o", "node1,node2"]]
    # closed by a stage that failed while SLURM ended its job for a lost node: named as well (the stage may have
    # been ended before its error reached the log); closed after a failure SLURM did not cause, or a success: not
    assert vanished_attempt_message({**rec, "exit_code": 1}, {"SLURM_JOB_ID": "13"}, run=run) == msg.replace(
        "ended without its launch returning", "ended with launcher exit code 1")

    def failed_job(argv):
        return "JobId=12 JobState=FAILED NodeList=node[1-2]" if argv[2] == "job" else down

    assert vanished_attempt_message({**rec, "exit_code": 1}, {"SLURM_JOB_ID": "13"}, run=failed_job) is None
    assert vanished_attempt_message({**rec, "exit_code": 0}, {"SLURM_JOB_ID": "13"}, run=run) is None
    # no record, the same job again (SLURM's requeue)
    assert vanished_attempt_message(None, {}, run=run) is None
    assert "requeued by SLURM" in vanished_attempt_message(rec, {"SLURM_JOB_ID": "12"}, run=run)

    def forgotten(argv):  # past MinJobAge on a cluster without accounting: scontrol exits 1
        raise subprocess.CalledProcessError(1, argv)

    assert vanished_attempt_message(rec, {"SLURM_JOB_ID": "13"}, run=forgotten).endswith(
        "ended without its launch returning: SLURM no longer knows the job")
    local = attempt_record({}, [], started=100.0)
    assert vanished_attempt_message(local, {}, run=run).endswith("ended without its launch returning (killed, or "
                                                                 "its host lost)")


@pytest.fixture
def store(monkeypatch):
    import datetime

    import torch.distributed as dist

    from cpt.train import peers

    master = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False,
                           timeout=datetime.timedelta(seconds=10))
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(master.port))
    monkeypatch.setattr(peers, "_RUN", {})
    yield master


def test_a_rank_whose_heartbeat_stopped_is_named_with_its_host_and_pid(store):
    from cpt.train import peers

    assert peers.start(rank=0, world=3)
    for r, host, pid in ((1, "node1", 41), (2, "node2", 42)):
        store.set(f"cpt/peers/host/{r}", f'{{"host": "{host}", "pid": {pid}}}')
    store.set("cpt/peers/beat/2", "7")  # rank 2: stopped (its counter stays)
    stop = threading.Event()

    def rank1_beats():  # rank 1 runs (and reports the failure itself)
        n = 0
        while not stop.is_set():
            n += 1
            store.set("cpt/peers/beat/1", str(n))
            time.sleep(0.05)

    store.set("cpt/peers/failed/1", "1")
    t = threading.Thread(target=rank1_beats, daemon=True)
    t.start()
    try:
        msg = peers.absent_peers(check_s=0.5)
    finally:
        stop.set()
        t.join()
    assert msg == "rank 2 on node2 (pid 42) is not running: no heartbeat for 0.5 s (stopped, killed, or the node is gone)"
    assert store.get("cpt/peers/failed/0") == b"1"
    assert store.get("cpt/peers/host/0").decode().startswith('{"host": ') and str(os.getpid()) in store.get(
        "cpt/peers/host/0").decode()


def test_a_rank_hung_in_its_own_code_is_named_when_every_heartbeat_runs(store):
    from cpt.train import peers

    assert peers.start(rank=0, world=2)
    store.set("cpt/peers/host/1", '{"host": "node2", "pid": 43}')
    stop = threading.Event()

    def beats():
        n = 0
        while not stop.is_set():
            n += 1
            store.set("cpt/peers/beat/1", str(n))
            time.sleep(0.05)

    t = threading.Thread(target=beats, daemon=True)
    t.start()
    try:
        msg = peers.absent_peers(check_s=0.3)
    finally:
        stop.set()
        t.join()
    assert msg == "rank 1 on node2 (pid 43) did not reach the failed collective: hung in its own code (its heartbeat runs)"


def test_no_registry_for_a_world_of_one(store):
    from cpt.train import peers

    assert not peers.start(rank=0, world=1)
    assert peers.absent_peers(check_s=0) is None
