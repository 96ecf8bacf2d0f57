"""Real `torchrun --nproc_per_node 2` runs of `python -m cpt.train` on CPU (gloo) with a tiny LLaMA.

Proves: ddp and zero2 train (loss falls, both ranks hold identical weights, zero2 matches ddp); a run killed with
SIGKILL after a checkpoint and re-run ends bit-identical to an uninterrupted run; bucket order holds across ranks
and across the resume; SIGTERM (what SLURM / torchrun send) stops every rank at the same step with a checkpoint
and exit code 75.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cpt.testing import check_bucket_order, make_bucket_dataset, make_tiny_model, read_trace, torchrun_command

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SIZES = [24, 10, 18]
BASE = ["--set", "precision=fp32", "--set", "micro_batch_size=2", "--set", "accumulation_steps=2",
        "--set", "epochs=2", "--set", "lr=3e-3", "--set", "warmup_steps=2", "--set", "save_interval=4",
        "--set", "keep_last=2", "--set", "trace_samples=true", "--no-progress"]


def env():
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO / "src") + os.pathsep + e.get("PYTHONPATH", "")
    e.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return e


def torchrun(args, extra_env=None, timeout=240):
    e = env()
    e.update(extra_env or {})
    return subprocess.run(torchrun_command(sys.executable, 2, args), env=e, capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("train-inputs")
    model = make_tiny_model(root / "model", vocab_size=256, hidden=32, layers=2, heads=4, seed=1)
    (model / "tokenizer_config.json").write_text("{}")  # tokenizer files are copied into final/
    data = make_bucket_dataset(root / "ds", SIZES, vocab_size=256, min_len=8, max_len=24, seed=2)
    return model, data


def args(inputs, out, plugin="ddp", extra=()):
    model, data = inputs
    return ["--model", str(model), "--dataset", str(data), "--output", str(out), "--set", f"plugin={plugin}",
            *BASE, *extra]


def metrics(out):
    return [json.loads(x) for x in (Path(out) / "metrics.jsonl").read_text().splitlines()]


def final_tensors(out):
    from safetensors.torch import load_file

    tensors = {}
    for f in sorted((Path(out) / "final").glob("*.safetensors")):
        tensors.update(load_file(f))
    return tensors


@pytest.fixture(scope="module")
def ddp_run(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "stage"
    r = torchrun(args(inputs, out))
    assert r.returncode == 0, r.stderr[-4000:]
    return out


def assert_trained(out):
    m = metrics(out)
    assert [x["step"] for x in m] == list(range(1, 15))  # 7 steps/epoch x 2 epochs, one line per step
    first = sum(x["loss"] for x in m[:3]) / 3
    last = sum(x["loss"] for x in m[-3:]) / 3
    assert last < first - 0.1, (first, last)
    prov = json.loads((Path(out) / "final" / "provenance.json").read_text())
    assert prov["ranks_agree_params_sha256"] and prov["world_size"] == 2 and prov["steps"] == 14
    assert prov["padding_slots_per_epoch"] == 4  # bucket of 10 in micro steps of 2 x 2 ranks: 2 slots; 18: 2
    assert (Path(out) / "final" / "tokenizer_config.json").is_file()
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(Path(out) / "final")
    return m


def test_ddp_trains_ranks_agree_bucket_order(ddp_run):
    assert_trained(ddp_run)
    check_bucket_order(read_trace(ddp_run), SIZES)
    ckpts = sorted(p.name for p in (ddp_run / "checkpoints").glob("step-*"))
    assert ckpts == ["step-00000012", "step-00000014"]  # keep_last=2
    assert (ddp_run / "checkpoints" / "latest").read_text().strip() == "step-00000014"
    assert list((ddp_run / "tensorboard").glob("events.*"))


def test_zero2_trains_and_matches_ddp(inputs, ddp_run, tmp_path):
    out = tmp_path / "stage"
    r = torchrun(args(inputs, out, plugin="zero2"))
    assert r.returncode == 0, r.stderr[-4000:]
    m = assert_trained(out)
    ref = metrics(ddp_run)
    for a, b in zip(m, ref):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
        assert a["tokens"] == b["tokens"]


def test_sigkill_then_rerun_is_bit_identical(inputs, ddp_run, tmp_path):
    out = tmp_path / "stage"
    killed = torchrun(args(inputs, out), extra_env={"CPT_TRAIN_FAULT_SIGKILL_AFTER_STEP": "6"})
    assert killed.returncode != 0
    assert (out / "checkpoints" / "latest").read_text().strip() == "step-00000004"
    assert not (out / "final").exists()
    assert max(x["step"] for x in metrics(out)) == 6  # steps 5-6 ran, then the crash
    resumed = torchrun(args(inputs, out))
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "resumed from" in resumed.stderr
    a, b = final_tensors(out), final_tensors(ddp_run)
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].view(-1).view(dtype=__import__("torch").uint8).equal(
            b[k].view(-1).view(dtype=__import__("torch").uint8)), k
    assert [x["step"] for x in metrics(out)] == list(range(1, 15))
    assert [x["loss"] for x in metrics(out)] == [x["loss"] for x in metrics(ddp_run)]
    check_bucket_order(read_trace(out), SIZES)


def test_sigterm_stops_all_ranks_at_one_step_with_checkpoint(inputs, tmp_path):
    out = tmp_path / "stage"
    e = env()
    cmd = torchrun_command(sys.executable, 2, args(inputs, out, extra=["--set", "epochs=400",
                                                                       "--set", "save_interval=100000"]))
    proc = subprocess.Popen(cmd, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    deadline = time.time() + 180
    mpath = out / "metrics.jsonl"
    while time.time() < deadline:
        if mpath.exists() and len(mpath.read_text().splitlines()) >= 5:
            break
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)  # torchrun forwards SIGTERM to both workers
    _, err = proc.communicate(timeout=120)
    latest = (out / "checkpoints" / "latest").read_text().strip()
    state = json.loads((out / "checkpoints" / latest / "state.json").read_text())
    assert state["preempted"] is True
    assert state["step"] == max(x["step"] for x in metrics(out)) < state["total_steps"]
    assert "preempted by signal 15" in err
    trace = read_trace(out)
    steps = {r: max(t["step"] for t in trace if t["rank"] == r) for r in (0, 1)}
    assert steps[0] == steps[1] == state["step"]  # both ranks stopped after the same step


def test_launcher_turns_sigterm_into_exit_75(inputs, tmp_path):
    from cpt.testing import free_port

    out = tmp_path / "stage"
    cmd = [sys.executable, "-m", "cpt.launch.torchrun", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), "--",
           *args(inputs, out, extra=["--set", "epochs=400", "--set", "save_interval=100000"])]
    proc = subprocess.Popen(cmd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    mpath = out / "metrics.jsonl"
    deadline = time.time() + 180
    while time.time() < deadline and not (mpath.exists() and len(mpath.read_text().splitlines()) >= 3):
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, err[-3000:]
    state = json.loads((out / "checkpoints" / (out / "checkpoints" / "latest").read_text().strip()
                        / "state.json").read_text())
    assert state["preempted"] and state["step"] == max(x["step"] for x in metrics(out))


# ---- bf16 + gradient checkpointing (ddp, zero2) and the ZeRO-2 resume of the 7B recipe -----------------------
BF16_GC = ["--set", "precision=bf16", "--set", "grad_checkpointing=true"]
BF16_LOSS = 5e-3  # bf16 (8-bit mantissa) against the fp32 DDP run, over 14 steps of a tiny LLaMA


def trainer_info(out):
    return json.loads((Path(out) / "run.json").read_text())["trainer"]


@pytest.fixture(scope="module")
def zero2_bf16_gc_run(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("zero2-bf16") / "stage"
    r = torchrun(args(inputs, out, plugin="zero2", extra=BF16_GC))
    assert r.returncode == 0, r.stderr[-4000:]
    return out


@pytest.mark.parametrize("plugin", ["ddp", "zero2"])
def test_bf16_with_gradient_checkpointing_tracks_fp32_ddp(plugin, inputs, ddp_run, zero2_bf16_gc_run, tmp_path):
    if plugin == "zero2":
        out = zero2_bf16_gc_run
    else:
        out = tmp_path / "stage"
        r = torchrun(args(inputs, out, plugin=plugin, extra=BF16_GC))
        assert r.returncode == 0, r.stderr[-4000:]
    from cpt.testing import assert_curves_agree

    m = assert_trained(out)
    assert_curves_agree(m, metrics(ddp_run), BF16_LOSS)
    assert m != metrics(ddp_run)  # it really ran in bf16 (fp32 would reproduce the reference exactly)
    info = trainer_info(out)
    assert info["gradient_checkpointing"] is True and info["precision"] == "bf16"
    # ddp keeps fp32 master weights and autocasts; ZeRO loads bf16 working weights directly (no fp32 model)
    assert info["load_dtype"] == ("float32" if plugin == "ddp" else "bfloat16")
    exported = final_tensors(out)  # what the ranks held: fp32 master weights under ddp, bf16 under ZeRO
    torch = __import__("torch")
    assert {t.dtype for t in exported.values()} == {torch.float32 if plugin == "ddp" else torch.bfloat16}


def test_zero2_bf16_sigkill_then_rerun_is_bit_identical(inputs, zero2_bf16_gc_run, tmp_path):
    out = tmp_path / "stage"
    killed = torchrun(args(inputs, out, plugin="zero2", extra=BF16_GC),
                      extra_env={"CPT_TRAIN_FAULT_SIGKILL_AFTER_STEP": "6"})
    assert killed.returncode != 0
    assert (out / "checkpoints" / "latest").read_text().strip() == "step-00000004"
    resumed = torchrun(args(inputs, out, plugin="zero2", extra=BF16_GC))
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "resumed from" in resumed.stderr
    from cpt.testing import assert_same_bits

    assert_same_bits(final_tensors(out), final_tensors(zero2_bf16_gc_run))
    assert [x["loss"] for x in metrics(out)] == [x["loss"] for x in metrics(zero2_bf16_gc_run)]
    check_bucket_order(read_trace(out), SIZES)
