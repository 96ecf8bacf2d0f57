"""Attacks on resuming (issue 24, items 2, 3 and the checkpoint half of 8): impossible states, a lower max_steps on
a finished run, another --model, a damaged `latest` pointer and ill-typed state.json fields. Each is one
CheckpointError naming the file and the field (exit 2, nothing exported), or the exact resume."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cpt.core.errors import CheckpointError
from cpt.testing import make_bucket_dataset, make_tiny_model
from cpt.train import checkpoint as ckpt
from cpt.train.ckpt_io import write_manifest
from cpt.train.resume import lineage, plan_resume

REPO = Path(__file__).resolve().parents[2]
SETTINGS = ["--set", "plugin=zero2", "--set", "precision=fp32", "--set", "micro_batch_size=2", "--set", "lr=3e-3",
            "--set", "warmup_steps=1", "--set", "save_interval=2", "--set", "keep_last=5",
            "--set", "tensorboard=false", "--no-progress"]
LAST = "step-00000005"  # 10 samples, 2 per step


def train(model, data, out, *extra):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO / "src"))
    return subprocess.run([sys.executable, "-m", "cpt.train", "--model", str(model), "--dataset", str(data),
                           "--output", str(out), *SETTINGS, *extra], env=env, capture_output=True, text=True,
                          timeout=600, cwd=REPO)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("trust-resume")
    model = make_tiny_model(root / "model", vocab_size=128, hidden=16, layers=1, heads=2, seed=5)
    data = make_bucket_dataset(root / "ds", [6, 4], vocab_size=128, seed=6)
    out = root / "stage"
    r = train(model, data, out)
    assert r.returncode == 0, r.stderr[-4000:]
    assert (out / "checkpoints" / "latest").read_text().strip() == LAST
    return model, data, out


def finals(out: Path) -> dict:
    return {f.name: f.read_bytes() for f in sorted((out / "final").glob("*.safetensors"))}


@pytest.mark.slow
def test_a_lower_max_steps_on_a_finished_run_is_an_error_not_a_wrong_export(run, tmp_path):
    model, data, ref = run
    out = shutil.copytree(ref, tmp_path / "stage", symlinks=True)
    before = finals(out)
    r = train(model, data, out, "--set", "max_steps=3")
    assert r.returncode == 2, r.stderr[-3000:]
    assert (f"{out / 'checkpoints' / LAST / 'state.json'}: the checkpoint is at step 5 but train.max_steps is 3; "
            f"training cannot go back") in r.stderr
    assert finals(out) == before


def test_another_model_does_not_silently_continue_the_old_lineage(run, tmp_path):
    model, data, ref = run
    path = ref / "checkpoints" / LAST
    state = json.loads((path / "state.json").read_text())
    assert state["lineage"] == lineage(model, data)
    other = make_tiny_model(tmp_path / "other", vocab_size=128, hidden=16, layers=1, heads=2, seed=99)
    with pytest.raises(CheckpointError, match=rf"{path / 'state.json'}: this checkpoint continues the model {model} "
                                              rf"\(sha256 \w+\), this run's --model {other} is another one .* "
                                              rf"resuming would silently switch lineage"):
        plan_resume(path, state["config"], 1, 1, True, "zero2", set(), lineage(other, data))
    copy = shutil.copytree(model, tmp_path / "copy")  # the same model elsewhere: the same lineage
    plan = plan_resume(path, state["config"], 1, 1, True, "zero2", set(), lineage(copy, data))
    assert plan.state["step"] == 5 and not plan.elastic
    moved = make_bucket_dataset(tmp_path / "ds", [6, 4], vocab_size=128, seed=7)  # same shape, other tokens
    with pytest.raises(CheckpointError, match=r"continues the dataset .* this run's --dataset .* is another one"):
        plan_resume(path, state["config"], 1, 1, True, "zero2", set(), lineage(model, moved))


def forge(ref: Path, dest: Path, **fields) -> Path:
    """A copy of the newest checkpoint with state.json fields replaced and a valid manifest."""
    path = shutil.copytree(ref / "checkpoints" / LAST, dest / LAST)
    state = json.loads((path / "state.json").read_text())
    for k, v in fields.items():
        if "." in k:
            state[k.split(".")[0]][k.split(".")[1]] = v
        else:
            state[k] = v
    (path / "state.json").write_text(json.dumps(state))
    write_manifest(path, 5)
    assert ckpt.verify_checkpoint(path) == []
    return path


@pytest.mark.parametrize("fields,message", [
    ({"step": 10, "total_steps": 3}, r"step 10 of 3 is impossible"),
    ({"step": -5}, r"field 'step' must be an integer >= 0, got -5"),
    ({"step": "5"}, r"field 'step' must be an integer >= 0, got '5'"),
    ({"tokens": 1.5}, r"field 'tokens' must be an integer >= 0, got 1.5"),
    ({"sampler": [1, 2]}, r"field 'sampler' must be an object, got list"),
    ({"sampler.micro_step": None}, r"field 'sampler.micro_step' must be an integer >= 0, got None"),
    ({"world_size": True}, r"field 'world_size' must be an integer >= 1, got True"),
])
def test_impossible_or_ill_typed_states_are_errors_naming_file_and_field(run, tmp_path, fields, message):
    model, data, ref = run
    path = forge(ref, tmp_path, **fields)
    cfg = json.loads((path / "state.json").read_text())["config"]
    with pytest.raises(CheckpointError, match=rf"{path / 'state.json'}: {message}"):
        plan_resume(path, {**cfg, "max_steps": None}, 1, 1, True, "zero2", set(), lineage(model, data))


def test_a_non_utf8_latest_pointer_falls_back_to_scanning(run, tmp_path):
    _, _, ref = run
    out = shutil.copytree(ref, tmp_path / "stage", symlinks=True)
    root = out / "checkpoints"
    (root / "latest").write_bytes(b"\xff\xfe step-\x00\n")
    assert ckpt.latest_checkpoint(root) is None
    assert ckpt.find_resume_checkpoint(root, log=lambda m: None) == root / LAST
    assert (root / "latest").read_text() == LAST + "\n"  # rewritten
    (root / "latest").write_text("../../elsewhere\n")
    assert ckpt.latest_checkpoint(root) is None
