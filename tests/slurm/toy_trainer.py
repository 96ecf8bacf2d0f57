"""A stand-in trainer for the SLURM launch tests: a real torch.distributed (gloo) job that runs N steps,
checkpoints every step, and on SIGUSR1/SIGTERM finishes its step, checkpoints and exits 75; a rerun resumes.

    python toy_trainer.py --steps 20 --step-seconds 0.5 --ckpt DIR --out DIR
Writes DIR/final.json with the world size, the resume step and the node names of all ranks.
"""

import argparse
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

stop = {"signal": None}


def on_signal(signum, frame):
    stop["signal"] = signum


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--step-seconds", type=float, default=0.2)
    p.add_argument("--ckpt", required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    signal.signal(signal.SIGUSR1, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    ckpt = Path(a.ckpt) / "state.json"
    start = json.loads(ckpt.read_text())["step"] if ckpt.exists() else 0
    if rank == 0:
        print(f"toy-trainer: world {world}, resuming at step {start}", flush=True)
    step = start
    while step < a.steps:
        time.sleep(a.step_seconds)
        t = torch.ones(1)
        dist.all_reduce(t)  # a real collective every step
        step += 1
        flag = torch.tensor([1 if stop["signal"] else 0])
        dist.all_reduce(flag)  # all ranks agree to stop after the same step
        if rank == 0:
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            tmp = ckpt.with_suffix(".tmp")
            tmp.write_text(json.dumps({"step": step}))
            os.replace(tmp, ckpt)
            with open(Path(a.ckpt) / "steps.log", "a") as f:
                f.write(f"{step}\n")
        if flag.item():
            if rank == 0:
                print(f"toy-trainer: signal received, checkpointed step {step}, exiting 75", flush=True)
            dist.barrier()
            dist.destroy_process_group()
            sys.exit(75)
    hosts = [None] * world
    dist.all_gather_object(hosts, socket.gethostname())
    if rank == 0:
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "final.json").write_text(json.dumps(
            {"world_size": world, "resumed_from": start, "steps": step, "hosts": hosts,
             "slurm_job_id": os.environ.get("SLURM_JOB_ID")}))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
