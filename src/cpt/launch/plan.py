"""How a training job starts: per-rule SLURM resources and the torchrun / srun + torchrun command line.

Everything here is a pure function of (environment, config) -> resources dict or argv list, so it is unit-tested
without a cluster; `python -m cpt.launch [options] -- PROGRAM...` plans the launch and `exec`s it.

Local mode (no SLURM job):  python -m torch.distributed.run --standalone --nnodes=1 --nproc_per_node=G PROGRAM
SLURM mode (inside a job):  srun --nodes=N --ntasks=N --ntasks-per-node=1 ... bash -c
                            "trap '' USR1; exec python -m torch.distributed.run --nnodes=N
                             --node_rank=$SLURM_NODEID --nproc_per_node=G --rdzv_backend=static
                             --rdzv_endpoint=FIRST_NODE:PORT PROGRAM"
One torchrun per node; the rendezvous host is the first node of `scontrol show hostnames` of the allocation
(rank 0 hosts the store, so `static` needs no hostname matching); the port is configured, else derived from the
job id in a range OUTSIDE the ephemeral port range (net.ipv4.ip_local_port_range), so no socket that srun or any
other program opens without naming a port can take it between our choice and torchrun's bind (a free ephemeral
port picked on the batch host was taken by srun's own listening socket in one of two runs). On the first node
the derived port is also checked to be bindable now, stepping to the next one in the range if a listener holds it.

Time limits and preemption: the training rule asks SLURM for `--signal=USR1@<seconds>` (without `B:`). That
signal goes to every process of every job step, i.e. to the trainer processes started by the srun above:
the trainer finishes its step, checkpoints and exits with PREEMPTED_EXIT_CODE (75); a rerun (or Snakemake's
`retries`) resumes from that checkpoint. `trap '' USR1` makes torchrun itself ignore the signal (its default
action would kill it and its workers mid-checkpoint); the workers inherit the ignore until the trainer installs
its own handler. `B:USR1` would hit only the `/bin/sh` that sbatch --wrap runs, which dies of it and takes the
job down with it (measured with slurm 22.05).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from typing import Callable, Mapping, Sequence

from cpt.core.errors import ConfigError, TrainError
from cpt.core.schema import complete, default, parse_pairs, subschema

DEFAULT_SIGNAL_SECONDS = 300
PORT_LOW = 20000                       # lowest rendezvous port derived from a job id (above SLURM's 6817-6818)
MIN_PORT_SPAN = 1024                   # a usable range outside the ephemeral range has at least this many ports
EPHEMERAL_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"
LINUX_DEFAULT_EPHEMERAL = (32768, 60999)
PORT_ATTEMPTS = 64

# --------------------------------------------------------------------------------------------------- launch

@dataclass
class LaunchSpec:
    """What to start: ranks per node, expected nodes, rendezvous and environment settings."""

    nproc_per_node: int = 1
    nodes: int | None = None              # expected number of nodes (checked against the allocation)
    min_nodes: int | None = None          # fewest nodes accepted (resources.train.min_nodes); None = nodes
    cpus_per_task: int | None = None      # CPUs of the one task per node (srun --cpus-per-task)
    gpus_per_node: int = 0                # srun --gres=gpu:N
    port: int | None = None               # rendezvous port; None = derived from the job id (choose_port)
    rdzv_backend: str = field(default_factory=lambda: default("launch.rdzv_backend"))  # static | c10d
    env: dict = field(default_factory=dict)   # e.g. NCCL_DEBUG, NCCL_SOCKET_IFNAME, NCCL_IB_DISABLE
    srun_args: list = field(default_factory=list)
    torchrun: list = field(default_factory=lambda: [sys.executable, "-m", "torch.distributed.run"])
    max_restarts: int = 0

    def __post_init__(self):
        if not isinstance(self.nproc_per_node, int) or self.nproc_per_node < 1:
            raise ConfigError(f"launch: nproc_per_node must be a positive integer, got {self.nproc_per_node!r}")
        backends = subschema("launch.rdzv_backend")["enum"]
        if self.rdzv_backend not in backends:
            raise ConfigError(f"launch.rdzv_backend: expected one of {backends}, got {self.rdzv_backend!r}")
        if self.port is not None and not (1024 <= int(self.port) <= 65535):
            raise ConfigError(f"launch.port: expected 1024..65535 or null, got {self.port!r}")
        for key, value in self.env.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(key)):
                raise ConfigError(f"launch.env: {key!r} is not a valid environment variable name")


@dataclass
class LaunchPlan:
    mode: str                 # "local" or "slurm"
    argv: list
    env: dict                 # variables to set on top of the current environment
    hosts: list
    port: int | None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def detect_mode(env: Mapping[str, str], requested: str = "auto") -> str:
    if requested not in ("auto", "local", "slurm"):
        raise ConfigError(f"launch.mode: expected auto, local or slurm, got {requested!r}")
    if requested != "auto":
        if requested == "slurm" and not env.get("SLURM_JOB_ID"):
            raise TrainError("launch mode 'slurm' needs to run inside a SLURM job (SLURM_JOB_ID is not set)")
        return requested
    return "slurm" if env.get("SLURM_JOB_ID") else "local"


def expand_nodelist(nodelist: str) -> list[str]:
    """SLURM hostlist expression -> host names, e.g. 'gpu[01-03,7],cpu1' -> gpu01 gpu02 gpu03 gpu7 cpu1.

    Same order as `scontrol show hostnames` (used when scontrol is not at hand).
    """
    hosts: list[str] = []
    for item in re.findall(r"[^,\[]+(?:\[[^\]]*\][^,\[]*)*", nodelist.strip()):
        item = item.strip(",")
        if not item:
            continue
        parts = [[""]]
        for literal, bracket in re.findall(r"([^\[]*)(?:\[([^\]]*)\])?", item):
            if literal:
                parts.append([literal])
            if bracket:
                choices = []
                for rng in bracket.split(","):
                    if "-" in rng:
                        lo, hi = rng.split("-", 1)
                        width = len(lo)
                        choices += [str(i).zfill(width) for i in range(int(lo), int(hi) + 1)]
                    else:
                        choices.append(rng)
                parts.append(choices)
        names = [""]
        for choices in parts:
            names = [n + c for n in names for c in choices]
        hosts += names
    return hosts


def parse_scontrol_job(text: str) -> dict:
    """`scontrol show job -o <id>` -> {key: value} (NodeList, NumNodes, BatchHost, ...)."""
    fields = {}
    for token in text.split():
        if "=" in token:
            key, value = token.split("=", 1)
            fields.setdefault(key, value)
    return fields


def ephemeral_range(text: str | None = None) -> tuple[int, int]:
    """The kernel's ephemeral port range (ports handed to sockets bound to port 0, e.g. srun's listeners)."""
    if text is None:
        try:
            with open(EPHEMERAL_RANGE_FILE, encoding="ascii") as fh:
                text = fh.read()
        except OSError:
            return LINUX_DEFAULT_EPHEMERAL
    lo, hi = (int(x) for x in text.split()[:2])
    return lo, hi


def rendezvous_range(ephemeral: tuple[int, int]) -> tuple[int, int]:
    """Ports [lo, hi] for derived rendezvous ports: below the ephemeral range if there is room, else above it."""
    eph_lo, eph_hi = ephemeral
    if eph_lo - PORT_LOW >= MIN_PORT_SPAN:
        return PORT_LOW, eph_lo - 1
    if 65535 - eph_hi >= MIN_PORT_SPAN:
        return eph_hi + 1, 65535
    raise ConfigError(f"launch.port: the ephemeral port range {eph_lo}-{eph_hi} leaves no room for a rendezvous "
                      "port that no other socket can be given; set launch.port to a port reserved for it")


def derive_port(job_id: str | int, ports: tuple[int, int] | None = None, attempt: int = 0) -> int:
    """The rendezvous port of a job: a function of its id (and the attempt) in `ports` (default: the range outside
    this machine's ephemeral ports). Two jobs whose first nodes coincide differ unless their ids are equal modulo
    the range's size; the first node steps to the next attempt if the port is held (see choose_port)."""
    lo, hi = ports or rendezvous_range(ephemeral_range())
    return lo + (int(re.sub(r"\D", "", str(job_id)) or 0) + attempt) % (hi - lo + 1)


def port_bindable(port: int) -> bool:
    """Whether a TCP listener could bind `port` on every address of this host now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("", port))
        except OSError:
            return False
    return True


def local_argv(spec: LaunchSpec, program: Sequence[str]) -> list[str]:
    """Single machine: torchrun --standalone picks a free rendezvous port itself."""
    _check_program(program)
    return [*spec.torchrun, "--standalone", "--nnodes=1", f"--nproc_per_node={spec.nproc_per_node}",
            f"--max_restarts={spec.max_restarts}", *program]


def slurm_argv(spec: LaunchSpec, program: Sequence[str], hosts: Sequence[str], job_id: str, port: int) -> list[str]:
    """Inside an allocation of len(hosts) nodes: one srun task (= one torchrun) per node."""
    _check_program(program)
    n = len(hosts)
    if n < 1:
        raise TrainError("the SLURM allocation has no nodes (empty node list)")
    srun = ["srun", f"--nodes={n}", f"--ntasks={n}", "--ntasks-per-node=1", "--kill-on-bad-exit=1",
            "--mem=0", f"--job-name=torchrun-{job_id}"]
    if spec.cpus_per_task:
        srun.append(f"--cpus-per-task={spec.cpus_per_task}")
    if spec.gpus_per_node:
        srun.append(f"--gres=gpu:{spec.gpus_per_node}")
    srun += [str(a) for a in spec.srun_args]
    torchrun = [*spec.torchrun, f"--nnodes={n}", "--node_rank=$SLURM_NODEID",
                f"--nproc_per_node={spec.nproc_per_node}", f"--rdzv_backend={spec.rdzv_backend}",
                f"--rdzv_id={job_id}", f"--rdzv_endpoint={hosts[0]}:{port}", f"--max_restarts={spec.max_restarts}"]
    # quote everything except the per-node $SLURM_NODEID, which the node's shell expands
    words = [shlex.quote(w) if w != "--node_rank=$SLURM_NODEID" else '--node_rank="$SLURM_NODEID"'
             for w in [*torchrun, *program]]
    node_script = "trap '' USR1; exec " + " ".join(words)
    return [*srun, "bash", "-c", node_script]


def allocation_hosts(env: Mapping[str, str], run: Callable[[list[str]], str] | None = None) -> list[str]:
    """Host names of the job's allocation, first node first.

    The Snakemake jobstep executor strips SLURM_JOB_NODELIST, so without it the node list comes from
    `scontrol show job`; `scontrol show hostnames` expands it (the built-in expander when scontrol is absent).
    """
    run = run or _run
    nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    if not nodelist:
        job_id = env.get("SLURM_JOB_ID")
        if not job_id:
            raise TrainError("not inside a SLURM job: SLURM_JOB_ID is not set")
        fields = parse_scontrol_job(run(["scontrol", "show", "job", "-o", str(job_id)]))
        nodelist = fields.get("NodeList")
        if not nodelist or nodelist == "(null)":
            raise TrainError(f"SLURM job {job_id} has no node list yet (scontrol show job {job_id})")
    try:
        hosts = run(["scontrol", "show", "hostnames", nodelist]).split()
    except (OSError, subprocess.CalledProcessError):
        hosts = expand_nodelist(nodelist)
    if not hosts:
        raise TrainError(f"could not expand the SLURM node list {nodelist!r}")
    return hosts


def choose_port(spec: LaunchSpec, env: Mapping[str, str], hosts: Sequence[str],
                bindable: Callable[[int], bool] = port_bindable, ephemeral: tuple[int, int] | None = None) -> int:
    """Configured port, else derived from the job id outside the ephemeral range; on the first node (which hosts
    the rendezvous store) the first of PORT_ATTEMPTS successive derived ports that is bindable now."""
    if spec.port:
        return int(spec.port)
    job_id = env.get("SLURM_JOB_ID", "0")
    ports = rendezvous_range(ephemeral or ephemeral_range())
    this = env.get("SLURMD_NODENAME") or socket.gethostname().split(".")[0]
    if not hosts or this != hosts[0]:
        return derive_port(job_id, ports)
    for attempt in range(PORT_ATTEMPTS):
        port = derive_port(job_id, ports, attempt)
        if bindable(port):
            return port
    raise TrainError(f"no free rendezvous port among {PORT_ATTEMPTS} derived from job {job_id} in "
                     f"{ports[0]}-{ports[1]} on {this}; set launch.port")


def plan_launch(env: Mapping[str, str], spec: LaunchSpec, program: Sequence[str], mode: str | None = None,
                run: Callable[[list[str]], str] | None = None,
                bindable: Callable[[int], bool] = port_bindable) -> LaunchPlan:
    """Environment + launch settings + trainer command -> the argv to exec (and env to add); `mode`: launch.mode."""
    mode = detect_mode(env, mode or default("launch.mode"))
    extra_env = {str(k): str(v) for k, v in spec.env.items()}
    if mode == "local":
        return LaunchPlan("local", local_argv(spec, program), extra_env, [socket.gethostname()], None)
    hosts = allocation_hosts(env, run)
    low = spec.min_nodes or spec.nodes
    if spec.nodes is not None and not low <= len(hosts) <= spec.nodes:
        wanted = f"{spec.nodes}" if low == spec.nodes else f"{low} to {spec.nodes} (resources.train.min_nodes)"
        raise TrainError(
            f"the SLURM allocation has {len(hosts)} node(s) ({','.join(hosts)}) but {wanted} were configured; "
            "make resources.train.nodes and the job's --nodes agree"
        )
    port = choose_port(spec, env, hosts, bindable)
    argv = slurm_argv(spec, program, hosts, str(env["SLURM_JOB_ID"]), port)
    extra_env.setdefault("MASTER_ADDR", hosts[0])
    extra_env.setdefault("MASTER_PORT", str(port))
    return LaunchPlan("slurm", argv, extra_env, list(hosts), port)


def launch_options(launch_cfg: Mapping | None) -> list[str]:
    """Config `launch:` section -> `python -m cpt.launch` options (the rule's shell joins them with shlex).

    launch: {env: {NCCL_DEBUG: WARN, NCCL_SOCKET_IFNAME: ib0}, port: null, rdzv_backend: static,
             srun_args: [--cpu-bind=none], mode: auto}
    Kept out of the rule's params on purpose: NCCL and rendezvous settings do not change results.
    """
    cfg = complete("launch", launch_cfg)
    defaults = default("launch")
    opts: list[str] = []
    if cfg["mode"] != defaults["mode"]:
        opts += ["--mode", str(cfg["mode"])]
    if cfg["port"]:
        opts += ["--port", str(int(cfg["port"]))]
    if cfg["rdzv_backend"] != defaults["rdzv_backend"]:
        opts += ["--rdzv-backend", str(cfg["rdzv_backend"])]
    for key, value in cfg["env"].items():
        opts += ["--env", f"{key}={value}"]
    for arg in cfg["srun_args"]:
        opts.append(f"--srun-arg={arg}")
    LaunchSpec(port=cfg["port"], rdzv_backend=cfg["rdzv_backend"], env=dict(cfg["env"]))  # the env names
    return opts


def stage_launcher(resources: Mapping | object, launch_cfg: Mapping | None = None,
                   env: Mapping[str, str] | None = None, run: Callable[[list[str]], str] | None = None):
    """A `launcher(nproc, train_args) -> argv` for cpt.launch.stage.run_stage, local or under SLURM.

    `resources` is the rule's Snakemake resources (snakemake.resources in a script; made by rule_resources with
    distributed=True). Each node runs the preemption-aware torchrun wrapper cpt.launch.torchrun (it forwards
    SIGTERM/SIGUSR1 to the trainer and exits 75 after a preemption checkpoint); srun returns that 75.
    Environment settings (launch.env, MASTER_ADDR/PORT) are put in front of the argv with `env`. After a call,
    `launcher.hosts` holds the nodes of that launch.
    """
    get = resources.get if isinstance(resources, Mapping) else (lambda k, d=None: getattr(resources, k, d))
    opts = complete("launch", launch_cfg)

    def launcher(nproc: int, train_args: Sequence[str]) -> list[str]:
        spec = LaunchSpec(nproc_per_node=int(nproc), nodes=int(get("nodes", 1) or 1),
                          min_nodes=int(get("min_nodes", 0) or 0) or None,
                          cpus_per_task=int(get("cpus_per_task", 0) or 0) or None,
                          gpus_per_node=int(get("gpus_per_node", 0) or 0), port=opts["port"],
                          rdzv_backend=opts["rdzv_backend"], env=dict(opts["env"]),
                          srun_args=list(opts["srun_args"]),
                          torchrun=[sys.executable, "-m", "cpt.launch.torchrun"])
        plan = plan_launch(os.environ if env is None else env, spec, ["--", *train_args],
                           mode=opts["mode"], run=run)
        print(f"cpt.launch ({plan.mode}): {shlex.join(plan.argv)}", file=sys.stderr, flush=True)
        launcher.hosts = list(plan.hosts)  # the launch's nodes: the stage names the failed ones (cpt.launch.nodes)
        prefix = ["env", *[f"{k}={v}" for k, v in plan.env.items()]] if plan.env else []
        return [*prefix, *plan.argv]

    return launcher


def _check_program(program: Sequence[str]) -> None:
    if not program:
        raise ConfigError("launch: no program given (expected e.g. `-- -m cpt.cli train ...` after the options)")


def _run(argv: list[str]) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60).stdout


def main(argv: Sequence[str] | None = None) -> int:
    """python -m cpt.launch [--nproc-per-node G] [--nodes N] ... [--dry-run] -- PROGRAM..."""
    import argparse

    args = list(sys.argv[1:] if argv is None else argv)
    if "--" not in args:
        raise ConfigError("usage: python -m cpt.launch [options] -- PROGRAM [ARGS...]  (the `--` is required)")
    split = args.index("--")
    options, program = args[:split], args[split + 1:]
    p = argparse.ArgumentParser(prog="python -m cpt.launch", description=__doc__.split("\n")[0])
    p.add_argument("--mode", default=default("launch.mode"), choices=subschema("launch.mode")["enum"])
    p.add_argument("--nproc-per-node", type=int, default=1)
    p.add_argument("--nodes", type=int, default=None, help="expected nodes (checked against the allocation)")
    p.add_argument("--min-nodes", type=int, default=None, help="fewest nodes accepted (default: --nodes)")
    p.add_argument("--cpus-per-task", type=int, default=None)
    p.add_argument("--gpus-per-node", type=int, default=0)
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--rdzv-backend", default=default("launch.rdzv_backend"),
                   choices=subschema("launch.rdzv_backend")["enum"])
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="e.g. NCCL_DEBUG=WARN")
    p.add_argument("--srun-arg", action="append", default=[], help="extra srun option (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="print the plan as JSON, start nothing")
    ns = p.parse_args(options)
    spec = LaunchSpec(nproc_per_node=ns.nproc_per_node, nodes=ns.nodes, min_nodes=ns.min_nodes,
                      cpus_per_task=ns.cpus_per_task,
                      gpus_per_node=ns.gpus_per_node, port=ns.port, rdzv_backend=ns.rdzv_backend,
                      env=parse_pairs(ns.env, "launch --env"), srun_args=ns.srun_arg)
    plan = plan_launch(os.environ, spec, program, mode=ns.mode)
    if ns.dry_run:
        print(plan.to_json())
        return 0
    print(f"cpt.launch ({plan.mode}): {shlex.join(plan.argv)}", file=sys.stderr, flush=True)
    os.execvpe(plan.argv[0], plan.argv, {**os.environ, **plan.env})
    return 1  # not reached


def entry() -> int:
    """`python -m cpt.launch`: main() with library errors as one line and exit status 2."""
    try:
        return main()
    except (ConfigError, TrainError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
