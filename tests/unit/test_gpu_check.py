"""benchmarks/gpu_check.sh --dry-run on CPU: every command line the GPU run would execute is checked, and with --kit
the kit is verified against its manifest, installed into per-lane --target folders and checked for completeness.

The GPU figures themselves need a CUDA machine (docs/benchmarks.md says which were recorded). The dry run with the
real kit (built by benchmarks/gpu_kit.sh from the registry) is the benchmark path; here --kit runs on small synthetic
kits (tests/unit/test_gpu_kit.py checks the real kit list's completeness)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"


def dry(tmp_path, *args, **env):
    e = dict(os.environ, PYTHON=sys.executable, SNAKEMAKE=str(Path(sys.executable).with_name("snakemake")),
             PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="1", GPU_CHECK_SCRATCH=str(tmp_path / "scratch"), **env)
    return subprocess.run(["bash", str(SCRIPT), "--dry-run", "--out", str(tmp_path / "gc"), *args], env=e, cwd=REPO,
                          capture_output=True, text=True, timeout=600)


COLOSSALAI_CASES = ("colossalai-zero2-gc-sdpa", "colossalai-zero2-nogc-sdpa", "colossalai-zero2-gc-flash",
                    "colossalai-zero2-nogc-flash")
TORCH_CASES = ("torch-fsdp2-gc-sdpa", "torch-fsdp2-nogc-sdpa", "torch-fsdp2-gc-flash", "torch-fsdp2-nogc-flash")


@pytest.mark.slow
def test_dry_run_checks_every_command_line(tmp_path):
    # the demo config stands in for the SmolLM2 experiment: same step, same checks (plan + trainer settings)
    r = dry(tmp_path, GPU_CHECK_REAL_CONFIG="config/config.yaml")
    assert r.returncode == 0, r.stderr[-4000:]
    err = r.stderr
    for label in COLOSSALAI_CASES:
        assert f"+ [{label}]" in err
    # each case was validated: the plugin a CUDA device would build, and the exact trainer command
    assert err.count("ok: LowLevelZeroPlugin(") == 4
    assert "--set grad_checkpointing=true --set flash_attention=true" in err
    assert "--vocab 69104 --hidden 4096 --intermediate 11008 --heads 32 --layers 2" in err
    # the torch engine's cases: validated through cpt's train entry when it has the engine, else "not available"
    if "torch engine: available" in err:
        assert err.count("ok: engine=torch") == 4 and all(f"+ [{label}]" in err for label in TORCH_CASES)
        expected_seq = 8
    else:
        assert "torch engine: not available: this checkout's cpt.train does not accept engine=torch" in err
        for label in TORCH_CASES:
            case = json.loads((tmp_path / "gc" / "cases" / f"{label}.json").read_text())
            assert case["status"] == "not available" and "train.engine" in case["reason"], case
        expected_seq = 4
    assert err.count("--benchmark-seq-len 4096") == expected_seq
    assert "CPUAdamLoader" in err and "FusedOptimizerLoader" in err
    assert "+ [real-model-plan]" in err and "This was a dry-run" in err
    assert "ok: LowLevelZeroPlugin" in err.split("+ [real-model]")[1]
    assert "every command line checked" in err
    env = json.loads((tmp_path / "gc" / "env-colossalai.json").read_text())
    assert env["cuda_available"] is False and env["colossalai"] == importlib.metadata.version("colossalai")
    assert env["transformers"] == importlib.metadata.version("transformers")
    assert not (tmp_path / "gc" / "gpu_check.json").exists()  # a dry run measures nothing


def test_missing_real_model_config_is_reported_not_fatal(tmp_path):
    r = dry(tmp_path, GPU_CHECK_REAL_CONFIG="config/no-such-experiment.yaml", GPU_CHECK_STEPS="real")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "skip real-model: config/no-such-experiment.yaml is not in this checkout" in r.stderr


def synthetic_kit(tmp_path, lanes=("common", "colossalai", "hf451")) -> Path:
    sys.path.insert(0, str(REPO / "tests" / "unit"))
    from test_gpu_kit import gk, make_wheel

    kit = tmp_path / "kit"
    for lane in lanes:
        make_wheel(kit / lane, f"kitprobe-{lane}", "1.0", {f"kitprobe_{lane}/__init__.py": f"LANE = {lane!r}\n"})
    gk.manifest(kit, 64)
    return kit


def test_kit_dry_run_installs_the_lanes_and_runs_the_completeness_check(tmp_path):
    kit = synthetic_kit(tmp_path)
    r = dry(tmp_path, "--kit", str(kit), GPU_CHECK_STEPS="none")
    site = tmp_path / "scratch" / "site"
    for lane in ("common", "colossalai", "hf451"):  # installed for CPython 3.12, one --target folder per lane
        assert (site / lane / f"kitprobe_{lane}" / "__init__.py").read_text() == f"LANE = {lane!r}\n"
    assert "sha256 verified" in r.stderr and "installed 1 wheels into" in r.stderr
    # these wheels are not the kit list: the completeness check says so and the dry run fails
    assert r.returncode == 1, r.stderr[-3000:]
    assert "FAILED kit-check" in r.stderr and "INCOMPLETE" in r.stderr
    rep = json.loads((tmp_path / "gc" / "kit-check.json").read_text())
    assert not rep["ok"] and any("colossalai==0.5.0 is not in the kit" in p for p in rep["problems"])


def test_kit_that_differs_from_its_manifest_is_refused(tmp_path):
    kit = synthetic_kit(tmp_path)
    whl = next((kit / "common").glob("*.whl"))
    whl.write_bytes(whl.read_bytes() + b"\0")
    r = dry(tmp_path, "--kit", str(kit), GPU_CHECK_STEPS="none")
    assert r.returncode == 1 and "kit files differ from manifest.json" in r.stderr
    assert "the kit did not install; nothing else can run" in r.stderr
    assert not (tmp_path / "scratch" / "site").exists()


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


def test_torch_engine_case_and_real_model_shape_are_validated(tmp_path):
    e = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    tt = [sys.executable, str(REPO / "benchmarks" / "train_throughput.py"), "--dry-run"]
    r = subprocess.run(tt + ["--engine", "torch", "--set", "plugin=zero2", "--precision", "bf16"], env=e,
                       capture_output=True, text=True, timeout=300, cwd=REPO)
    probe = subprocess.run([sys.executable, "-c", "from cpt.train.config import load_config; "
                            "load_config(None, ['engine=torch'])"], env=e, capture_output=True, text=True, cwd=REPO)
    if probe.returncode == 0:  # the engine exists: the case is validated like any other
        assert r.returncode == 0 and "ok: engine=torch plugin=zero2 precision=bf16" in r.stdout, r.stderr
        assert "--set engine=torch" in r.stdout
    else:
        assert r.returncode == 2 and "train.engine" in r.stderr, r.stderr
    r = subprocess.run(tt + ["--model-config", str(tmp_path / "none.json"), "--make-model", str(tmp_path / "m")],
                       env=e, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert r.returncode == 2 and "--model-config" in r.stderr and "no such file" in r.stderr
