"""The built wheel installs into a fresh virtual environment (no system site-packages, nothing of the test's own
environment) with only its declared dependencies, pinned by requirements.lock, plus colossalai with --no-deps
(the documented route, pyproject.toml); then `cpt --help` and one training step run from it. An import of src/
that pyproject.toml does not declare makes the training step (or `cpt --help`) fail here.

pip resolves from the package indexes it is configured with (the registries; no other network)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from cpt.testing import make_bucket_dataset, make_tiny_model

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # ~2.5 min on 2 cores: about 1 min of it pip unpacking torch & co.


def _run(cmd, **kw):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    assert r.returncode == 0, f"{cmd}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def _source_tree(dst: Path) -> Path:
    """The files git would ship (tracked + untracked not ignored), without data/downloads: builds see no build/
    or egg-info left over from a checkout."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.splitlines()
    for rel in files:
        src = REPO / rel
        if rel.startswith("data/downloads") or not src.is_file():
            continue
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst / rel)
    return dst


def test_wheel_installs_in_a_fresh_venv_and_trains_one_step(tmp_path):
    src = _source_tree(tmp_path / "src")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp_path / "dist",
          src])
    (wheel,) = (tmp_path / "dist").glob("colossal_llama_cpt-*.whl")

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False, system_site_packages=False).create(env_dir)
    py = env_dir / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", py, "install", "-q", "--no-compile"]
    _run([*pip, "-c", REPO / "requirements.lock", wheel])
    colossalai = next(x for x in (REPO / "requirements.lock").read_text().split() if x.startswith("colossalai=="))
    _run([*pip, "--no-deps", colossalai])

    # nothing of this checkout on the path: the installed package only
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PATH=f"{env_dir / 'bin'}:"
               + env.get("PATH", ""))
    where = _run([py, "-c", "import cpt, cpt.core.schema as s; print(cpt.__file__); print(s.SCHEMA)"], env=env,
                 cwd=tmp_path).stdout.split()
    assert all(str(env_dir) in w for w in where), where  # the wheel's copy of the schema, not the checkout's
    assert "prepare-pretrain" in _run([env_dir / "bin" / "cpt", "--help"], env=env, cwd=tmp_path).stdout

    model = make_tiny_model(tmp_path / "model", vocab_size=128, hidden=16, layers=1, heads=2)
    data = make_bucket_dataset(tmp_path / "ds", [4], vocab_size=128)
    out = tmp_path / "out"
    _run([env_dir / "bin" / "cpt", "train", "--model", model, "--dataset", data, "--output", out, "--set",
          "max_steps=1", "--set", "micro_batch_size=2", "--set", "plugin=ddp", "--set", "precision=fp32",
          "--no-progress"], env=env, cwd=tmp_path, timeout=300)
    (record,) = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert record["step"] == 1 and record["loss"] > 0
    assert (out / "final" / "config.json").is_file()
