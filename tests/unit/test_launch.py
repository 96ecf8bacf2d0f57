"""cpt.launch.plan: per-rule SLURM resources and the torchrun / srun + torchrun command lines.

The pure functions are checked on their argv; the node command is also run for real (2 "nodes" on this machine,
gloo) to prove the rendezvous it builds works, and that SLURM's step signal reaches the trainer, not torchrun.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from cpt.core.errors import PREEMPTED_EXIT_CODE, ConfigError, TrainError
from cpt.core.resources import merge_resources
from cpt.launch.plan import (
    LaunchSpec,
    choose_port,
    derive_port,
    ephemeral_range,
    expand_nodelist,
    local_argv,
    main,
    parse_scontrol_job,
    plan_launch,
    port_bindable,
    rendezvous_range,
    slurm_argv,
)
from cpt.launch.resources import rule_resources, rule_threads

REPO = Path(__file__).resolve().parents[2]
TOY = REPO / "tests" / "slurm" / "toy_trainer.py"
TRAIN_7B = {
    "default": {"partition": "gpu", "account": "proj42", "mem_mb": 8000, "runtime": 120},
    "train": {"nodes": 8, "gpus_per_node": 8, "cpus_per_task": 64, "mem_mb": 900000, "runtime": 2880,
              "signal_seconds": 600, "gpu_model": "a800"},
    "dataset": {"cpus_per_task": 32, "mem_mb": 64000},
}


def no_scontrol(argv):
    raise OSError("scontrol not available in this test")


# ---------------------------------------------------------------- resources

def test_merge_resources_layers_defaults_then_default_then_rule():
    r = merge_resources(TRAIN_7B, "dataset")
    assert r["partition"] == "gpu" and r["account"] == "proj42"      # from resources.default
    assert r["cpus_per_task"] == 32 and r["mem_mb"] == 64000          # rule wins
    assert r["runtime"] == 120 and r["nodes"] == 1 and r["gpus_per_node"] == 0
    assert r["nproc_per_node"] == 1
    assert merge_resources(TRAIN_7B, "train")["nproc_per_node"] == 8  # one rank per GPU by default
    # `cpus` (threads of a single-process rule) stands in for cpus_per_task when that is not given
    assert merge_resources({"default": {"cpus": 3}}, "x")["cpus_per_task"] == 3
    assert merge_resources({"default": {"cpus": 3}, "x": {"cpus_per_task": 5}}, "x")["cpus_per_task"] == 5
    assert merge_resources(None, "anything")["mem_mb"] == 2000


@pytest.mark.parametrize("cfg, key", [
    ({"train": {"gpus": 8}}, "resources.train.gpus"),
    ({"train": {"nodes": 0}}, "resources.train.nodes"),
    ({"train": {"nodes": "8"}}, "resources.train.nodes"),
    ({"default": {"mem_mb": -1}}, "resources.train.mem_mb"),
    ({"train": ["nodes", 8]}, "resources.train"),
])
def test_merge_resources_errors_name_the_key(cfg, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        merge_resources(cfg, "train")


def test_rule_resources_multi_node_gpu_training():
    r = rule_resources(TRAIN_7B, "train", distributed=True)
    assert r["nodes"] == 8 and r["gres"] == "gpu:a800:8" and r["gpus_per_node"] == 8
    assert r["nproc_per_node"] == 8 and r["cpus_per_task"] == 64
    assert r["slurm_partition"] == "gpu" and r["slurm_account"] == "proj42"
    assert r["mem_mb"] == 900000 and r["runtime"] == 2880
    assert r["mpi"] == 0 and "tasks" not in r  # GPU jobs: plugin would turn tasks into --ntasks-per-gpu
    extra = r["slurm_extra"].split()
    assert "--ntasks-per-node=1" in extra and "--signal=USR1@600" in extra
    assert not any(e.startswith("--signal=B:") for e in extra)


def test_rule_resources_cpu_training_asks_one_task_per_node():
    r = rule_resources({"train": {"nodes": 2, "nproc_per_node": 2, "cpus_per_task": 4}}, "train", distributed=True)
    assert r["tasks"] == 2 and r["nodes"] == 2 and "gres" not in r and r["nproc_per_node"] == 2
    assert "slurm_partition" not in r and "slurm_account" not in r
    # no --no-kill: a job that loses its batch node would run on, empty, until its time limit (SLURM 22.05)
    assert "slurm_extra" not in r


def test_rule_resources_only_training_spans_nodes():
    with pytest.raises(ConfigError, match=r"resources\.dataset\.nodes"):
        rule_resources({"dataset": {"nodes": 2}}, "dataset")
    r = rule_resources(TRAIN_7B, "dataset")
    assert "mpi" not in r and "gres" not in r and r["nodes"] == 1


def test_rule_resources_pass_extra_and_qos_verbatim():
    r = rule_resources({"evaluate": {"qos": "high", "constraint": "ib", "slurm_extra": "--exclusive"}}, "evaluate")
    assert r["qos"] == "high" and r["constraint"] == "ib" and r["slurm_extra"] == "--exclusive"


# ---------------------------------------------------------------- node lists, ports

@pytest.mark.parametrize("nodelist, hosts", [
    ("localhost", ["localhost"]),
    ("gpu[01-03,7],cpu1", ["gpu01", "gpu02", "gpu03", "gpu7", "cpu1"]),
    ("n[008-010]", ["n008", "n009", "n010"]),
    ("a[1-2]b[3-4]", ["a1b3", "a1b4", "a2b3", "a2b4"]),
    ("x1,y[2-3]", ["x1", "y2", "y3"]),
])
def test_expand_nodelist(nodelist, hosts):
    assert expand_nodelist(nodelist) == hosts


def test_parse_scontrol_job():
    text = ("JobId=17 JobName=x UserId=root(0) JobState=RUNNING NumNodes=2 NumCPUs=4 NodeList=gpu[01-02] "
            "BatchHost=gpu01 Command=(null)")
    f = parse_scontrol_job(text)
    assert f["NodeList"] == "gpu[01-02]" and f["NumNodes"] == "2" and f["BatchHost"] == "gpu01"


def test_derive_port_is_deterministic_and_outside_the_ephemeral_range():
    assert derive_port("123456") == derive_port(123456)
    assert derive_port("1") != derive_port("2")
    lo, hi = ephemeral_range()
    assert all(not lo <= derive_port(j) <= hi for j in (0, 1, 19999, 20000, 987654321, "12_3"))
    assert rendezvous_range((32768, 60999)) == (20000, 32767)
    assert all(20000 <= derive_port(j, (20000, 32767)) <= 32767 for j in (0, 12767, 12768, 987654321))
    assert rendezvous_range((15000, 60000)) == (60001, 65535)   # no room below: above it
    with pytest.raises(ConfigError, match="launch.port"):
        rendezvous_range((1024, 65000))
    assert ephemeral_range("9000\t9999\n") == (9000, 9999)
    assert derive_port(5, (20000, 20009), attempt=7) == 20002


def test_choose_port_steps_past_a_held_port_on_the_first_node_only():
    spec = LaunchSpec()
    env = {"SLURM_JOB_ID": "40", "SLURMD_NODENAME": "n1"}
    held = {derive_port("40", (20000, 32767)), derive_port("40", (20000, 32767), 1)}
    port = choose_port(spec, env, ["n1", "n2"], bindable=lambda p: p not in held, ephemeral=(32768, 60999))
    assert port == derive_port("40", (20000, 32767), 2)
    other = choose_port(spec, {**env, "SLURMD_NODENAME": "n2"}, ["n1", "n2"], bindable=lambda p: False,
                        ephemeral=(32768, 60999))
    assert other == derive_port("40", (20000, 32767))
    with pytest.raises(TrainError, match="no free rendezvous port"):
        choose_port(spec, env, ["n1"], bindable=lambda p: False, ephemeral=(32768, 60999))
    with socket.socket() as s:   # a port really held by a listener here is not chosen
        s.bind(("", derive_port("40", (20000, 32767))))
        s.listen()
        assert not port_bindable(s.getsockname()[1])


# ---------------------------------------------------------------- argv

def test_local_argv_is_standalone_torchrun():
    spec = LaunchSpec(nproc_per_node=4, torchrun=["torchrun"])
    argv = local_argv(spec, ["-m", "cpt.cli", "train", "--stage", "base"])
    assert argv[:2] == ["torchrun", "--standalone"]
    assert "--nproc_per_node=4" in argv and "--nnodes=1" in argv
    assert argv[-5:] == ["-m", "cpt.cli", "train", "--stage", "base"]
    with pytest.raises(ConfigError, match="no program"):
        local_argv(spec, [])


def test_slurm_argv_one_torchrun_per_node_with_rendezvous_on_first_node():
    spec = LaunchSpec(nproc_per_node=8, cpus_per_task=64, gpus_per_node=8, torchrun=["torchrun"],
                      srun_args=["--exclusive"])
    hosts = [f"gpu{i:02d}" for i in range(1, 9)]
    argv = slurm_argv(spec, ["-m", "cpt.cli", "train", "--config", "a b.yaml"], hosts, "4242", 31000)
    assert argv[0] == "srun"
    srun_opts = argv[:argv.index("bash")]
    for opt in ("--nodes=8", "--ntasks=8", "--ntasks-per-node=1", "--cpus-per-task=64", "--gres=gpu:8",
                "--kill-on-bad-exit=1", "--exclusive"):
        assert opt in srun_opts
    assert argv[-3:-1] == ["bash", "-c"]
    script = argv[-1]
    assert script.startswith("trap '' USR1; exec ")
    words = shlex.split(script.split("exec ", 1)[1])
    assert words[0] == "torchrun"
    assert "--nnodes=8" in words and "--nproc_per_node=8" in words
    assert "--node_rank=$SLURM_NODEID" in words  # expanded per node by that node's shell
    assert "--rdzv_endpoint=gpu01:31000" in words and "--rdzv_backend=static" in words
    assert words[-5:] == ["-m", "cpt.cli", "train", "--config", "a b.yaml"]  # quoting survives


def test_plan_launch_local_and_slurm_modes():
    spec = LaunchSpec(nproc_per_node=2, env={"NCCL_DEBUG": "WARN"})
    local = plan_launch({}, spec, ["train.py"])
    assert local.mode == "local" and "--standalone" in local.argv and local.env == {"NCCL_DEBUG": "WARN"}

    env = {"SLURM_JOB_ID": "77", "SLURM_JOB_NODELIST": "node[3-4]", "SLURMD_NODENAME": "node3"}
    plan = plan_launch(env, spec, ["train.py"], run=no_scontrol, bindable=lambda p: True)
    assert plan.mode == "slurm" and plan.hosts == ["node3", "node4"] and plan.port == derive_port("77")
    assert f"--rdzv_endpoint=node3:{plan.port}" in plan.argv[-1] and "--nnodes=2" in plan.argv[-1]
    assert plan.env["MASTER_ADDR"] == "node3" and plan.env["NCCL_DEBUG"] == "WARN"

    # not on the first node: every node derives the same port from the job id
    plan = plan_launch({**env, "SLURMD_NODENAME": "node4"}, spec, ["train.py"], run=no_scontrol)
    assert plan.port == derive_port("77")
    # a configured port wins
    plan = plan_launch(env, LaunchSpec(nproc_per_node=2, port=30123), ["train.py"], run=no_scontrol)
    assert plan.port == 30123


def test_plan_launch_reads_nodelist_from_scontrol_when_env_was_stripped():
    calls = []

    def fake_scontrol(argv):  # the jobstep executor strips SLURM_JOB_NODELIST; scontrol answers instead
        calls.append(argv)
        if argv[:3] == ["scontrol", "show", "job"]:
            return "JobId=9 NumNodes=3 NodeList=c[1-3] BatchHost=c1\n"
        raise OSError("no hostnames subcommand here")

    plan = plan_launch({"SLURM_JOB_ID": "9", "SLURMD_NODENAME": "c1"}, LaunchSpec(nodes=3), ["t.py"],
                       run=fake_scontrol, bindable=lambda p: True)
    assert plan.hosts == ["c1", "c2", "c3"] and calls[0] == ["scontrol", "show", "job", "-o", "9"]


def test_plan_launch_checks_node_count_and_mode():
    env = {"SLURM_JOB_ID": "5", "SLURM_JOB_NODELIST": "n[1-2]"}
    with pytest.raises(TrainError, match="2 node"):
        plan_launch(env, LaunchSpec(nodes=8), ["t.py"], run=no_scontrol)
    with pytest.raises(TrainError, match="SLURM_JOB_ID"):
        plan_launch({}, LaunchSpec(), ["t.py"], mode="slurm")
    with pytest.raises(ConfigError, match="rdzv_backend"):
        LaunchSpec(rdzv_backend="etcd")
    with pytest.raises(ConfigError, match="launch.env"):
        LaunchSpec(env={"BAD NAME": "1"})


def test_main_dry_run_prints_the_plan(capsys, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert main(["--nproc-per-node", "3", "--env", "NCCL_DEBUG=INFO", "--dry-run", "--", "-m", "x"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["mode"] == "local" and "--nproc_per_node=3" in plan["argv"] and plan["argv"][-2:] == ["-m", "x"]
    assert plan["env"] == {"NCCL_DEBUG": "INFO"}
    with pytest.raises(ConfigError, match="--"):
        main(["--nproc-per-node", "2"])


# ---------------------------------------------------------------- real runs (gloo on CPU)

def _env():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "MASTER_", "TORCHELASTIC"))}
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


@pytest.mark.distributed
def test_node_commands_rendezvous_across_two_nodes(tmp_path):
    """Run what srun would run on each of 2 nodes (SLURM_NODEID 0 and 1): 2 x 2 ranks meet at the endpoint."""
    spec = LaunchSpec(nproc_per_node=2)
    program = [str(TOY), "--steps", "2", "--step-seconds", "0", "--ckpt", str(tmp_path / "ck"),
               "--out", str(tmp_path / "out")]
    argv = slurm_argv(spec, program, ["127.0.0.1", "127.0.0.1"], "1", derive_port(os.getpid()))
    node_cmd = argv[argv.index("bash"):]
    procs = [subprocess.Popen(node_cmd, env={**_env(), "SLURM_NODEID": str(i)}, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in (0, 1)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    final = json.loads((tmp_path / "out" / "final.json").read_text())
    assert final["world_size"] == 4 and final["steps"] == 2


@pytest.mark.distributed
def test_step_signal_reaches_trainer_not_torchrun(tmp_path):
    """SLURM's --signal=USR1 (no B:) hits every process of the step. torchrun must ignore it (trap '' USR1),
    the trainer checkpoints and exits 75, and a rerun resumes from that checkpoint."""
    spec = LaunchSpec(nproc_per_node=2)
    program = [str(TOY), "--steps", "400", "--step-seconds", "0.05", "--ckpt", str(tmp_path / "ck"),
               "--out", str(tmp_path / "out")]
    argv = slurm_argv(spec, program, ["127.0.0.1"], "1", derive_port(os.getpid() + 1))
    node_cmd = argv[argv.index("bash"):]
    log = open(tmp_path / "node.log", "w")
    proc = subprocess.Popen(node_cmd, env={**_env(), "SLURM_NODEID": "0"}, cwd=tmp_path, stdout=log,
                            stderr=subprocess.STDOUT)
    steps = tmp_path / "ck" / "steps.log"
    deadline = time.time() + 90
    while time.time() < deadline and not (steps.exists() and len(steps.read_text().split()) >= 3):
        time.sleep(0.2)
    assert steps.exists(), (tmp_path / "node.log").read_text()
    root = psutil.Process(proc.pid)
    for p in [root, *root.children(recursive=True)]:  # like proctrack: signal every process of the step
        p.send_signal(signal.SIGUSR1)
    rc = proc.wait(timeout=60)
    text = (tmp_path / "node.log").read_text()
    assert rc != -signal.SIGUSR1, "torchrun was killed by SIGUSR1 (the trap did not hold)"
    assert f"exiting {PREEMPTED_EXIT_CODE}" in text
    assert re.search(rf"exitcode\s*:\s*{PREEMPTED_EXIT_CODE}", text), text  # torchrun saw the trainer's 75
    stopped = json.loads((tmp_path / "ck" / "state.json").read_text())["step"]
    assert 3 <= stopped < 400 and not (tmp_path / "out" / "final.json").exists()

    # rerun with fewer remaining steps: resumes from the checkpoint
    program[program.index("400")] = str(stopped + 2)
    argv = slurm_argv(spec, program, ["127.0.0.1"], "2", derive_port(os.getpid() + 2))
    subprocess.run(argv[argv.index("bash"):], env={**_env(), "SLURM_NODEID": "0"}, cwd=tmp_path, check=True,
                   capture_output=True, timeout=120)
    final = json.loads((tmp_path / "out" / "final.json").read_text())
    assert final["resumed_from"] == stopped and final["steps"] == stopped + 2


def test_resource_keys_match_the_config_schema():
    import yaml

    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "resources.schema.yaml").read_text())
    from cpt.core.resources import RESOURCE_DEFAULTS

    assert set(schema["additionalProperties"]["properties"]) == set(RESOURCE_DEFAULTS)


def test_launch_options_from_config_round_trip_through_main(capsys, monkeypatch):
    from cpt.launch.plan import launch_options

    opts = launch_options({"env": {"NCCL_DEBUG": "WARN", "NCCL_SOCKET_IFNAME": "ib0"}, "port": 29555,
                           "srun_args": ["--cpu-bind=none"], "rdzv_backend": "c10d"})
    assert opts == ["--port", "29555", "--rdzv-backend", "c10d", "--env", "NCCL_DEBUG=WARN",
                    "--env", "NCCL_SOCKET_IFNAME=ib0", "--srun-arg=--cpu-bind=none"]
    assert launch_options(None) == [] and launch_options({"rdzv_backend": "static", "mode": "auto"}) == []
    with pytest.raises(ConfigError, match=r"launch\.nccl"):
        launch_options({"nccl": {}})
    with pytest.raises(ConfigError, match="launch.port"):
        launch_options({"port": 80})
    env = {"SLURM_JOB_ID": "3", "SLURM_JOB_NODELIST": "localhost", "SLURMD_NODENAME": "localhost"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert main([*opts, "--dry-run", "--", "t.py"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["port"] == 29555 and plan["env"]["NCCL_SOCKET_IFNAME"] == "ib0"
    assert "--cpu-bind=none" in plan["argv"] and "--rdzv_backend=c10d" in plan["argv"][-1]


def test_stage_launcher_wraps_the_preemption_aware_torchrun(monkeypatch):
    from types import SimpleNamespace

    from cpt.launch.plan import stage_launcher

    res = SimpleNamespace(nodes=2, cpus_per_task=16, gpus_per_node=8, nproc_per_node=8)
    env = {"SLURM_JOB_ID": "11", "SLURM_JOB_NODELIST": "g[1-2]", "SLURMD_NODENAME": "g1"}
    launch = stage_launcher(res, {"env": {"NCCL_DEBUG": "WARN"}, "port": 29999}, env=env, run=no_scontrol)
    argv = launch(8, ["--config", "c.json", "--output", "out dir"])
    assert argv[0] == "env" and "NCCL_DEBUG=WARN" in argv and "MASTER_ADDR=g1" in argv
    srun = argv[argv.index("srun"):]
    assert "--nodes=2" in srun and "--gres=gpu:8" in srun and "--cpus-per-task=16" in srun
    words = shlex.split(srun[-1].split("exec ", 1)[1])
    assert words[:3] == [sys.executable, "-m", "cpt.launch.torchrun"]
    assert words[words.index("--"):] == ["--", "--config", "c.json", "--output", "out dir"]
    assert "--rdzv_endpoint=g1:29999" in words and "--nnodes=2" in words

    local = stage_launcher({"nodes": 1}, env={})(2, ["--output", "o"])
    assert local[:3] == [sys.executable, "-m", "cpt.launch.torchrun"] and "--standalone" in local
    assert local[local.index("--"):] == ["--", "--output", "o"]
    with pytest.raises(TrainError, match="2 node"):
        stage_launcher({"nodes": 8}, env=env, run=no_scontrol)(8, ["x"])


def test_launch_schema_keys_match_launch_options():
    import yaml

    from cpt.launch.plan import launch_options

    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "launch.schema.yaml").read_text())
    defaults = {k: v["default"] for k, v in schema["properties"].items()}
    assert launch_options(defaults) == []  # the schema's defaults are the launcher's defaults


def test_config_with_launch_section_validates():
    import yaml

    from cpt.workflow import experiment

    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["launch"] = {"env": {"NCCL_DEBUG": "WARN"}, "port": 29600}
    out = experiment.validate(cfg)
    assert out["launch"]["rdzv_backend"] == "static"
    cfg["launch"] = {"nccl_debug": "WARN"}
    with pytest.raises(ConfigError, match="launch"):
        experiment.validate(cfg)


def _plugins():
    import yaml

    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "train.schema.yaml").read_text(encoding="utf-8"))
    found = []

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("plugin"), dict) and "enum" in node["plugin"]:
                found.extend(node["plugin"]["enum"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(schema)
    assert found, "train.schema.yaml lists no plugins"
    return sorted(set(found))


@pytest.mark.parametrize("plugin", _plugins())
def test_gpus_per_node_implies_ranks_everywhere(plugin):
    """nodes 2 x gpus_per_node 8 (no nproc_per_node): 16 GPUs requested and 16 processes launched, whatever the
    plugin; the SLURM request, threads, the rule's nproc and the srun + torchrun line all come from rule_resources."""
    import yaml

    from cpt.core import config as cptconfig
    from cpt.launch.plan import stage_launcher
    from cpt.launch.resources import rule_threads
    from cpt.workflow import experiment

    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text(encoding="utf-8"))
    cfg["train"]["defaults"]["plugin"] = plugin
    cfg["resources"]["train"] = {"nodes": 2, "gpus_per_node": 8, "cpus_per_task": 32}
    cfg = experiment.validate(cfg)
    assert cptconfig.stage_section(cfg, "replay")["plugin"] == plugin
    res = rule_resources(cfg["resources"], "train")           # what workflow/rules/train.smk asks SLURM for
    gpus = res["nodes"] * int(res["gres"].rsplit(":", 1)[1])
    assert (res["nodes"], gpus, res["mpi"]) == (2, 16, 0)
    assert "--ntasks-per-node=1" in res["slurm_extra"].split()
    nproc = res["nproc_per_node"]                             # the rule's params.nproc
    assert rule_threads(cfg["resources"], "train") == nproc == 8
    env = {"SLURM_JOB_ID": "7", "SLURM_JOB_NODELIST": "g[01-02]", "SLURMD_NODENAME": "g01"}
    argv = stage_launcher(res, cfg.get("launch"), env=env, run=no_scontrol)(nproc, ["--output", "o"])
    srun = argv[argv.index("srun"):]
    assert "--nodes=2" in srun and "--ntasks=2" in srun and "--gres=gpu:8" in srun
    words = shlex.split(srun[-1].split("exec ", 1)[1])
    nnodes = int(next(w for w in words if w.startswith("--nnodes=")).split("=")[1])
    per_node = int(next(w for w in words if w.startswith("--nproc_per_node=")).split("=")[1])
    assert nnodes * per_node == 16


def test_nproc_per_node_when_set_wins_over_gpus():
    from cpt.launch.resources import rule_threads

    res = {"train": {"nodes": 2, "gpus_per_node": 8, "nproc_per_node": 4}}
    assert rule_resources(res, "train")["nproc_per_node"] == 4 == rule_threads(res, "train")
    assert rule_threads({"default": {"cpus": 3}}, "dataset") == 3


def test_rule_resources_leave_what_the_config_does_not_set_to_the_profile():
    """mem_mb, runtime, cpus_per_task, partition and account are only requested when the config sets them; the
    Snakemake profile's default-resources fill in the rest (a rule's own resource would beat them)."""
    r = rule_resources({"train": {"nodes": 2, "nproc_per_node": 2}}, "train", distributed=True)
    assert not {"mem_mb", "runtime", "cpus_per_task", "slurm_partition", "slurm_account"} & set(r)
    assert r["nodes"] == 2 and r["tasks"] == 2
    r = rule_resources({"default": {"mem_mb": 3000, "cpus": 2, "partition": "cpu"}, "dataset": {"runtime": 9}},
                       "dataset")
    assert (r["mem_mb"], r["runtime"], r["cpus_per_task"], r["slurm_partition"]) == (3000, 9, 2, "cpu")
    assert "slurm_account" not in r and rule_threads({}, "dataset") == 1 and rule_threads(None, "train") == 1
