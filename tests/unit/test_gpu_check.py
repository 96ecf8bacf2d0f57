"""benchmarks/gpu_check.sh --dry-run on CPU: every command line the GPU run would execute is checked.

The GPU figures themselves need a CUDA machine (docs/benchmarks.md says which were recorded)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"


def dry(tmp_path, **env):
    e = dict(os.environ, PYTHON=sys.executable, SNAKEMAKE=str(Path(sys.executable).with_name("snakemake")),
             PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="1", **env)
    return subprocess.run(["bash", str(SCRIPT), "--dry-run", "--out", str(tmp_path / "gc")], env=e, cwd=REPO,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_dry_run_checks_every_command_line(tmp_path):
    # the demo config stands in for the SmolLM2 experiment: same step, same checks (plan + trainer settings)
    r = dry(tmp_path, GPU_CHECK_REAL_CONFIG="config/config.yaml")
    assert r.returncode == 0, r.stderr[-4000:]
    err = r.stderr
    for label in ("zero2-gc-flash", "zero2-gc-sdpa", "zero2-nogc-flash", "zero2-nogc-sdpa", "gemini-gc-flash"):
        assert f"+ [{label}]" in err
    # each case was validated: the plugin a CUDA device would build, and the exact trainer command
    assert err.count("ok: LowLevelZeroPlugin(") == 4 and err.count("ok: GeminiPlugin(") == 1
    assert err.count("--benchmark-seq-len 4096") == 5 and "--set grad_checkpointing=true --set flash_attention=true" in err
    assert "--vocab 69104 --hidden 4096 --intermediate 11008 --heads 32 --layers 2" in err
    assert "CPUAdamLoader" in err and "FusedOptimizerLoader" in err
    assert "+ [real-model-plan]" in err and "This was a dry-run" in err
    assert "ok: LowLevelZeroPlugin" in err.split("+ [real-model]")[1]
    assert "every command line checked" in err
    env = json.loads((tmp_path / "gc" / "env.json").read_text())
    assert env["cuda_available"] is False and env["colossalai"] is True
    assert not (tmp_path / "gc" / "gpu_check.json").exists()  # a dry run measures nothing


def test_missing_real_model_config_is_reported_not_fatal(tmp_path):
    r = dry(tmp_path, GPU_CHECK_REAL_CONFIG="config/no-such-experiment.yaml", GPU_CHECK_STEPS="real")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "skip real-model: config/no-such-experiment.yaml is not in this checkout" in r.stderr


def test_a_bad_case_fails_the_dry_run(tmp_path):
    e = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    r = subprocess.run([sys.executable, str(REPO / "benchmarks" / "train_throughput.py"), "--dry-run",
                        "--plugin", "gemini", "--precision", "fp32"], env=e, capture_output=True, text=True,
                       timeout=300, cwd=REPO)
    assert r.returncode == 2 and "error: train.precision: gemini supports only bf16/fp16" in r.stderr


def test_gpu_extra_is_pinned_and_never_installed_on_cpu():
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    gpu = project["optional-dependencies"]["gpu"]
    assert any(req.startswith("flash-attn==") for req in gpu)
    assert all("==" in req for req in gpu), gpu
    lock = dict(line.split("==", 1) for line in (REPO / "requirements.lock").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    for req in gpu:  # what the lock already pins, the extra pins the same
        name, version = req.split("==")
        assert lock.get(name, version) == version, (name, version, lock.get(name))
    for f in ("install.sh", ".ci/run"):
        assert "[gpu]" not in (REPO / f).read_text(), f
    assert "pip install --no-build-isolation -e .[gpu]" in (REPO / "docs" / "hpc.md").read_text()
