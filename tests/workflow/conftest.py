"""Workflow tests: real `snakemake` runs of the project's Snakefile on tiny configs, in temporary directories."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
TINY = Path(__file__).with_name("tiny.yaml")


def snakemake(workdir: Path, configfile: Path, *args: str, check: bool = True, timeout: int = 1800,
              snakefile: Path = REPO / "Snakefile", overlays: tuple = ()):
    """Run snakemake on the project's Snakefile with workdir as working directory; returns CompletedProcess.
    `overlays`: more config files, merged over `configfile` in order (Snakemake's --configfile A B ...)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(snakefile), "--directory", str(workdir),
           "--configfile", str(configfile), *map(str, overlays), "--cores", "2", "--nolock", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if check and out.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({out.returncode}):\n{out.stdout[-6000:]}\n"
                             f"{out.stderr[-6000:]}")
    return out


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_config() -> dict:
    return yaml.safe_load(TINY.read_text(encoding="utf-8"))
