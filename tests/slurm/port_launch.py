"""Inside a 2-node batch job: plan the launch with cpt.launch.plan (port derived from the job id) and run it with
rdzv_probe.py standing in for torchrun; exits with srun's code. Prints the chosen port."""

import os
import subprocess
import sys
from pathlib import Path

from cpt.launch.plan import LaunchSpec, plan_launch

spec = LaunchSpec(nodes=2, torchrun=[sys.executable, str(Path(__file__).with_name("rdzv_probe.py"))])
plan = plan_launch(os.environ, spec, ["probe"], mode="slurm")
print(f"port {plan.port}", flush=True)
sys.exit(subprocess.call(plan.argv, env={**os.environ, **plan.env}))
