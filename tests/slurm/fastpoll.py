"""`python tests/slurm/fastpoll.py ARGS...` is `python -m snakemake ARGS...` for the SLURM tests, with the SLURM
executor plugin's wait between two job-status checks capped at CPT_TEST_SLURM_POLL_S seconds (default 2).

Why: snakemake-executor-plugin-slurm 2.8.0 (requirements.lock) waits `slurm-init-seconds-before-status-checks`
after a job finishes, then 10 s longer after every check that saw no job finish (hard-coded, up to 180 s). A job of
one minute is thus noticed up to ~40 s late, and every SLURM test paid that per job. The plugin offers no option
for the growth, so the tests cap it here; the user profile (profiles/slurm) keeps the plugin's behaviour (a real
cluster's controller should not be polled every 2 s). Only the polling cadence of the Snakemake process that
submits changes: the jobs, their scripts and the job-step executor inside them are untouched.

`SNAKEMAKE` below is the command prefix the tests use: this script, the user profile, and the test workflow
profile tests/slurm/profile-test (short latency-wait and first status check), which overrides the user profile per key.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SNAKEMAKE = [sys.executable, str(HERE / "fastpoll.py"), "--profile", str(REPO / "profiles" / "slurm"),
             "--workflow-profile", str(HERE / "profile-test")]


def cap_status_polling(cap_s: float) -> None:
    from snakemake_executor_plugin_slurm import Executor
    from snakemake_interface_executor_plugins.executors.remote import RemoteExecutor

    prop = RemoteExecutor.__dict__.get("next_seconds_between_status_checks")
    if not isinstance(prop, property) or "next_seconds_between_status_checks" in Executor.__dict__:
        raise RuntimeError("snakemake-executor-plugin-slurm changed how it paces status checks; update "
                           "tests/slurm/fastpoll.py for the version in requirements.lock")

    def capped(self, value):
        prop.fset(self, value if value is None else min(value, cap_s))

    Executor.next_seconds_between_status_checks = property(prop.fget, capped)


if __name__ == "__main__":
    cap_status_polling(float(os.environ.get("CPT_TEST_SLURM_POLL_S", "2")))
    from snakemake.cli import main

    main()
