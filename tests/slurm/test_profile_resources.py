"""The SLURM profile's default-resources apply to every resource the experiment config does not set (a rule's own
resource beats them, so cpt.launch.resources names only what the config sets). A Snakemake dry run, no SLURM."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def _resources(out: str, rule: str) -> dict:
    block = out.split(f"rule {rule}:", 1)[1]
    line = re.search(r"resources: (.*)", block).group(1)
    return dict(item.split("=", 1) for item in line.split(", "))


def test_profile_default_resources_fill_what_the_config_leaves_unset(tmp_path):
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    # the profile's keys, with values unlike the built-in defaults of cpt.core.resources (mem 2000, runtime 60)
    assert {"mem_mb", "runtime", "cpus_per_task"} <= set(profile["default-resources"])
    defaults = {**profile["default-resources"], "runtime": 77, "cpus_per_task": 3, "slurm_partition": "site-part",
                "slurm_account": "site-acct"}
    shutil.copy(HERE / "train" / "Snakefile", tmp_path / "Snakefile")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({
        "train": {"epochs": 1},
        "resources": {"train": {"nodes": 2, "nproc_per_node": 2, "mem_mb": 3000, "account": "proj"}},
    }))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env["PYTHONPATH"] = str(REPO / "src")
    r = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile", "config.yaml",
                        "--default-resources", *[f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}"
                                                 for k, v in defaults.items()]],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    train = _resources(r.stdout, "train")
    assert train["mem_mb"] == "3000" and train["slurm_account"] == "proj"        # the config's
    assert train["runtime"] == "77" and train["cpus_per_task"] == "3"            # the profile's
    assert train["slurm_partition"] == "site-part" and train["nodes"] == "2"
