"""Which nodes of a SLURM job failed: read after a multi-node launch ends with an error, so the stage's error names
the lost node (`scontrol show node`) instead of only srun's exit code; and, when the node running the stage itself
was lost (nothing was left to report), read by the next attempt from the open launch record in run.json.

A node is failed when SLURM marks it DOWN, FAIL, or NOT_RESPONDING (`*` in sinfo). SLURM notices a node whose
slurmd stopped answering after `SlurmdTimeout`; srun returns only once the step's tasks on it are accounted for,
so by then the state is there (asked again for a moment when it is not yet).
"""

from __future__ import annotations

import os
import subprocess
import time
from typing import Callable, Mapping, Sequence

FAILED_STATES = ("DOWN", "FAIL", "NOT_RESPONDING", "POWERED_DOWN")


def parse_nodes(text: str) -> dict[str, dict]:
    """`scontrol show node -o <names>` -> {name: {"state": ..., "reason": ...}}."""
    nodes = {}
    for line in text.splitlines():
        fields: dict[str, str] = {}
        key = None
        for token in line.split():
            if "=" in token and token.split("=", 1)[0].isidentifier():
                key, value = token.split("=", 1)
                fields[key] = value
            elif key == "Reason":  # a reason has spaces: the words up to the next Key=
                fields[key] += " " + token
        if "NodeName" in fields:
            nodes[fields["NodeName"]] = {"state": fields.get("State", ""), "reason": fields.get("Reason", "")}
    return nodes


def is_failed(state: str) -> bool:
    """`State=` of scontrol (e.g. IDLE, MIXED, DOWN*+DRAIN, ALLOCATED*, IDLE+NOT_RESPONDING): failed or unreachable."""
    flags = state.upper().replace("*", "+NOT_RESPONDING").split("+")
    return any(f in FAILED_STATES for f in flags)


def failed_nodes(hosts: Sequence[str], run: Callable[[list[str]], str], wait_s: float = 0.0,
                 sleep: Callable[[float], None] = time.sleep) -> dict[str, dict]:
    """The nodes among `hosts` that SLURM reports failed ({name: {"state", "reason"}}), asking again for up to
    `wait_s` seconds while none is; {} when all are healthy or scontrol cannot be asked."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            nodes = parse_nodes(run(["scontrol", "show", "node", "-o", ",".join(hosts)]))
        except (OSError, subprocess.SubprocessError):
            return {}
        failed = {n: v for n, v in nodes.items() if is_failed(v["state"])}
        if failed or time.monotonic() >= deadline:
            return failed
        sleep(1.0)


def describe_failed(failed: Mapping[str, dict], job_id: str | None) -> str:
    """'node node2 of SLURM job 12 failed (State=DOWN*, Reason=Not responding)' for the stage's error."""
    items = [f"{name} (State={v['state']}" + (f", Reason={v['reason']}" if v["reason"] else "") + ")"
             for name, v in sorted(failed.items())]
    noun = "node" if len(items) == 1 else "nodes"
    return f"{noun} {', '.join(items)} of SLURM job {job_id or '?'} failed"


def _run(argv: list[str]) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=30).stdout


def lost_nodes_message(env: Mapping[str, str], hosts: Sequence[str] | None, wait_s: float = 2.0,
                       run: Callable[[list[str]], str] | None = None) -> str | None:
    """Inside a SLURM job whose multi-node launch on `hosts` failed: a sentence naming the failed nodes, or None
    (not in a SLURM job, one node, every node healthy). `hosts` are the launch's nodes, read before the launch:
    the job's node list after a failure may no longer hold the failed node."""
    if not env.get("SLURM_JOB_ID") or not hosts or len(hosts) < 2:
        return None
    failed = failed_nodes(hosts, run or _run, wait_s)
    return describe_failed(failed, env.get("SLURM_JOB_ID")) if failed else None


# ---- an attempt that ended without a word: the node that ran the stage itself was lost ----------------------------

def attempt_record(env: Mapping[str, str], hosts: Sequence[str] | None, started: float) -> dict:
    """What run.json keeps of a launch while it runs (`launch`): the SLURM job and its nodes, this host and pid.
    The stage adds `exit_code` when the launch returns; a record without it was never closed."""
    import socket

    return {"slurm_job_id": env.get("SLURM_JOB_ID"), "hosts": list(hosts or []), "host": socket.gethostname(),
            "pid": os.getpid(), "started": started}


# SLURM job states that end a job before its program did (the stage may not have been able to say why)
# (not FAILED: the batch script's own non-zero exit, which the stage's error explains)
ABNORMAL_JOB_STATES = ("NODE_FAIL", "CANCELLED", "TIMEOUT", "PREEMPTED", "BOOT_FAIL", "DEADLINE", "OUT_OF_MEMORY")


def vanished_attempt_message(record: Mapping | None, env: Mapping[str, str],
                             run: Callable[[list[str]], str] | None = None) -> str | None:
    """How the previous attempt of a stage ended, from its `launch` record in run.json, for the next attempt's log:
    - a record left open: the process running the stage ended before its launch returned (SIGKILL, or the node
      running the batch script lost -- nothing of the job was left to report it then);
    - a SLURM job that SLURM ended (NODE_FAIL, CANCELLED, TIMEOUT, ...): its state and the nodes SLURM reports
      failed, even when the stage got to say something first (the job may have been ended under it).
    None when the previous attempt finished, or failed in a way its own log already says."""
    if not isinstance(record, Mapping) or not record.get("started") or record.get("exit_code") == 0:
        return None
    run = run or _run
    job = record.get("slurm_job_id")
    hosts = [h for h in record.get("hosts") or [] if isinstance(h, str)]
    open_record = "exit_code" not in record
    where = (f"SLURM job {job} on {', '.join(hosts) or record.get('host', '?')}" if job
             else f"pid {record.get('pid', '?')} on {record.get('host', '?')}")
    ended = ("ended without its launch returning" if open_record
             else f"ended with launcher exit code {record['exit_code']}")
    text = f"the previous attempt ({where}) {ended}"
    if job and job == env.get("SLURM_JOB_ID"):
        return text + " (the same SLURM job: requeued by SLURM)"
    if not job:
        return text + " (killed, or its host lost)" if open_record else None
    from cpt.launch.plan import parse_scontrol_job

    try:
        state = parse_scontrol_job(run(["scontrol", "show", "job", "-o", str(job)])).get("JobState", "?")
    except subprocess.CalledProcessError:
        return text + ": SLURM no longer knows the job" if open_record else None
    except (OSError, subprocess.SubprocessError):
        return text + " (SLURM could not be asked)" if open_record else None
    if not open_record and state not in ABNORMAL_JOB_STATES:
        return None  # the stage's own error said it
    text += f": SLURM JobState={state}"
    failed = failed_nodes(hosts, run) if hosts else {}
    if failed:
        text += "; " + describe_failed(failed, job)
    return text
