"""`train.engine: torch` against the ColossalAI engine: real torchrun runs on CPU (gloo), 2 or 4 processes.

Same tiny LLaMA, same data, fp32: the torch engine's DDP, FSDP2 shard-grad-op (plugin zero2), FSDP2 full shard
(plugin gemini), tensor parallel tp=2 (plugin 3d on 2 processes) and FSDP2 x TP (plugin 3d, tp=2 on 4 processes: a
2 x 2 ("dp", "tp") mesh) reproduce the ColossalAI ddp run's loss at every step within 1e-5 and export the same
weights; an FSDP2 run killed after step 3 resumes through its DCP checkpoint of step 2 on ONE process and on FOUR
(elastic 2 -> 1 and 2 -> 4, accumulation 2 -> 4 / 2 -> 1 keeps the global batch) with the losses of the
uninterrupted run; the exports load with plain transformers; the effective config (max_length from the dataset,
accumulation after the resume) is in every checkpoint and in final/.

The inputs, the ColossalAI reference run and the killed run are made once per test session and shared by the
pytest-xdist workers (`once`): the suite's `-n 2` would otherwise spread this module's tests over both workers and
make each of them twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cpt.testing import (
    check_bucket_order,
    final_tensors,
    make_bucket_dataset,
    make_tiny_model,
    read_trace,
    torchrun_command,
)
from cpt.testing import read_metrics as metrics

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SIZES = [8, 8]  # global batch 8 (2 x 2 ranks x 2): 2 steps per epoch, 4 steps in all
TOL = 1e-5
BASE = ["--set", "precision=fp32", "--set", "micro_batch_size=2", "--set", "accumulation_steps=2",
        "--set", "epochs=2", "--set", "lr=3e-3", "--set", "warmup_steps=1", "--set", "save_interval=2",
        "--set", "trace_samples=true", "--set", "tensorboard=false", "--no-progress"]


def run(nproc, args, extra_env=None, timeout=300):
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO / "src") + os.pathsep + e.get("PYTHONPATH", "")
    e.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    e.update(extra_env or {})
    cmd = torchrun_command(sys.executable, nproc, args) if nproc > 1 else [sys.executable, "-m", "cpt.train", *args]
    return subprocess.run(cmd, env=e, capture_output=True, text=True, timeout=timeout, cwd=REPO)


@contextlib.contextmanager
def _locked(path: Path):
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def once(tmp_path_factory, name: str, make) -> Path:
    """`make(directory)` once per test session: under pytest-xdist the first worker to get here runs it, the others
    wait on the lock and use its directory (made again if that run failed). The workers' base temporary
    directories (popen-gwN) share their parent, the session's own directory."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    out = root / name
    with _locked(root / f"{name}.lock"):
        if not (out / ".done").is_file():
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            make(out)
            (out / ".done").touch()
    return out


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    def make(root):
        model = make_tiny_model(root / "model", vocab_size=256, hidden=32, layers=2, heads=4, seed=1)
        (model / "tokenizer_config.json").write_text("{}")
        make_bucket_dataset(root / "ds", SIZES, vocab_size=256, min_len=8, max_len=24, seed=2)

    root = once(tmp_path_factory, "engine-inputs", make)
    return root / "model", root / "ds"


def args(inputs, out, plugin, engine):
    model, data = inputs
    return ["--model", str(model), "--dataset", str(data), "--output", str(out), "--set", f"plugin={plugin}",
            "--set", f"engine={engine}", *BASE]


@pytest.fixture(scope="module")
def colossal_ddp(inputs, tmp_path_factory):
    def make(root):
        r = run(2, args(inputs, root / "stage", "ddp", "colossalai"))
        assert r.returncode == 0, r.stderr[-4000:]

    return once(tmp_path_factory, "engine-colossal", make) / "stage"


@pytest.fixture(scope="module")
def killed(inputs, tmp_path_factory):
    """A 2-process FSDP2 shard-grad-op run SIGKILLed after step 3: its latest checkpoint is step 2 (DCP)."""
    def make(root):
        out = root / "stage"
        r = run(2, args(inputs, out, "zero2", "torch"), {"CPT_TRAIN_FAULT_SIGKILL_AFTER_STEP": "3"})
        assert r.returncode != 0
        assert (out / "checkpoints" / "latest").read_text().strip() == "step-00000002"
        assert [x["step"] for x in metrics(out)] == [1, 2, 3]
        assert json.loads((out / "run.json").read_text())["trainer"]["sharding"] == "shard_grad_op"

    return once(tmp_path_factory, "engine-killed", make) / "stage"


def assert_same_run(out, ref):
    m, r = metrics(out), metrics(ref)
    assert [x["step"] for x in m] == [x["step"] for x in r] == [1, 2, 3, 4]
    for a, b in zip(m, r):
        assert a["tokens"] == b["tokens"], a["step"]
        assert abs(a["loss"] - b["loss"]) <= TOL, (a["step"], a["loss"], b["loss"])
    a, b = final_tensors(out), final_tensors(ref)
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and (a[k] - b[k]).abs().max().item() <= TOL, k
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(Path(out) / "final")  # plain transformers, no project code


# tensor parallel tp=2 on 2 processes has one data-parallel group: accumulation 4 keeps the global batch of 8
@pytest.mark.parametrize("plugin, extra, sharding", [
    ("ddp", [], "replicate"), ("gemini", [], "full_shard"),
    ("3d", ["--set", "tp=2", "--set", "accumulation_steps=4"], "tensor_parallel"),
])
def test_torch_engine_matches_colossalai_ddp(inputs, colossal_ddp, tmp_path, plugin, extra, sharding):
    out = tmp_path / "stage"
    r = run(2, [*args(inputs, out, plugin, "torch"), *extra])
    assert r.returncode == 0, r.stderr[-4000:]
    assert_same_run(out, colossal_ddp)
    info = json.loads((out / "run.json").read_text())["trainer"]
    assert info["engine"] == "torch" and info["sharding"] == sharding
    ckpt = out / "checkpoints" / "step-00000004"
    files = json.loads((ckpt / "manifest.json").read_text())["files"]
    assert "model/.metadata" in files and "optimizer/.metadata" in files  # DCP inside the manifest
    assert any(n.endswith(".distcp") for n in files)
    effective = json.loads((out / "final" / "effective_config.json").read_text())
    assert effective["max_length"] == 24 and effective["engine"] == "torch"  # from the dataset's manifest
    assert json.loads((ckpt / "effective_config.json").read_text()) == effective
    from cpt.train.config import from_mapping

    assert from_mapping(effective).to_dict() == effective
    prov = json.loads((out / "final" / "provenance.json").read_text())
    assert prov["effective_config"] == effective and prov["config"]["max_length"] is None


def test_fsdp2_x_tp_on_a_2x2_mesh_matches_colossalai_ddp(inputs, colossal_ddp, tmp_path):
    """plugin 3d, tp=2 on 4 processes: tensor parallel on "tp", FSDP2 shard-grad-op on "dp" (2 groups x micro
    batch 2 x accumulation 2 = the reference's global batch of 8)."""
    out = tmp_path / "stage"
    r = run(4, [*args(inputs, out, "3d", "torch"), "--set", "tp=2"])
    assert r.returncode == 0, r.stderr[-4000:]
    assert_same_run(out, colossal_ddp)
    state = json.loads((out / "checkpoints" / "step-00000004" / "state.json").read_text())
    assert state["world_size"] == 4 and state["dp_size"] == 2 and state["global_batch"] == 8
    assert json.loads((out / "run.json").read_text())["trainer"]["sharding"] == "tensor_parallel"
    trace = read_trace(out)
    seen = {r: [(t["step"], t["micro_step"], t["index"]) for t in trace if t["rank"] == r] for r in range(4)}
    assert seen[0] == seen[1] and seen[2] == seen[3] != seen[0]  # rank = dp x 2 + tp: tp peers, same samples
    check_bucket_order([t for t in trace if t["rank"] in (0, 2)], SIZES)


@pytest.mark.parametrize("nproc, accum", [(1, 4), (4, 1)])
def test_fsdp2_killed_then_resumed_on_another_world_size_equals_uninterrupted(inputs, colossal_ddp, killed, tmp_path,
                                                                             nproc, accum):
    """Elastic 2 -> 1 and 2 -> 4 through DCP: the FSDP2 checkpoint of 2 processes resharded on load."""
    out = tmp_path / "stage"
    shutil.copytree(killed, out)
    resumed = run(nproc, args(inputs, out, "zero2", "torch"))
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "elastic resume: the checkpoint was written by 2 processes" in resumed.stderr
    assert f"accumulation_steps 2 -> {accum} keeps the global batch of 8 sequences" in resumed.stderr
    assert_same_run(out, colossal_ddp)
    trace = read_trace(out)
    check_bucket_order(trace, SIZES)
    assert {t["rank"] for t in trace if t["step"] > 2} == set(range(nproc))
    effective = json.loads((out / "final" / "effective_config.json").read_text())
    assert effective["accumulation_steps"] == accum  # as it ran after the resume (the config asked for 2)
    state = json.loads((out / "checkpoints" / "step-00000004" / "state.json").read_text())
    assert state["world_size"] == nproc and state["engine"] == "torch" and state["global_batch"] == 8


def test_fsdp2_bf16_with_activation_checkpointing_tracks_fp32(inputs, colossal_ddp, tmp_path):
    """bf16 through MixedPrecisionPolicy over fp32 parameters, within the tolerance of the ColossalAI bf16 tests."""
    from cpt.testing import assert_curves_agree

    out = tmp_path / "stage"
    r = run(2, [*args(inputs, out, "zero2", "torch"), "--set", "precision=bf16", "--set", "grad_checkpointing=true"])
    assert r.returncode == 0, r.stderr[-4000:]
    m = metrics(out)
    assert_curves_agree(m, metrics(colossal_ddp), 5e-3)  # BF16_LOSS of test_train_torchrun
    assert m != metrics(colossal_ddp)  # it really computed in bf16
    info = json.loads((out / "run.json").read_text())["trainer"]
    assert info["precision"] == "bf16" and info["gradient_checkpointing"] is True and info["load_dtype"] == "float32"
    import torch

    assert {t.dtype for t in final_tensors(out).values()} == {torch.float32}  # the fp32 master weights
