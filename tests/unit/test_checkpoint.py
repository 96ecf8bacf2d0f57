"""Checkpoints that can be trusted (cpt.train.checkpoint): safe formats, a verified manifest, fallback to the newest
intact checkpoint, refused pickle payloads, non-finite weights refused, a full disk reported as ENOSPC.

Checkpoints come from real single-process runs of `python -m cpt.train` (LowLevelZero on CPU); every damage is
done to a copy, and each test asserts the clear error or the exact result and that nothing earlier is lost.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cpt.core.errors import CheckpointError
from cpt.testing import make_bucket_dataset, make_tiny_model
from cpt.train import checkpoint as ckpt

REPO = Path(__file__).resolve().parents[2]
SETTINGS = ["--set", "plugin=zero2", "--set", "precision=fp32", "--set", "micro_batch_size=2", "--set", "lr=3e-3",
            "--set", "warmup_steps=1", "--set", "save_interval=3", "--set", "keep_last=5",
            "--set", "tensorboard=false", "--no-progress"]
STEPS = ["step-00000003", "step-00000006", "step-00000009", "step-00000010"]  # 6 + 4 steps, saved every 3 + last


def train(inputs, out, extra_env=None):
    model, data = inputs
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO / "src"), **(extra_env or {}))
    return subprocess.run([sys.executable, "-m", "cpt.train", "--model", str(model), "--dataset", str(data),
                           "--output", str(out), *SETTINGS], env=env, capture_output=True, text=True, timeout=600,
                          cwd=REPO)


def final_bytes(out: Path) -> dict[str, bytes]:
    return {f.name: f.read_bytes() for f in sorted((out / "final").glob("*.safetensors"))}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt-inputs")
    model = make_tiny_model(root / "model", vocab_size=128, hidden=32, layers=2, heads=4, seed=5)
    data = make_bucket_dataset(root / "ds", [12, 8], vocab_size=128, seed=6)
    return model, data


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt-ref") / "stage"
    r = train(inputs, out)
    assert r.returncode == 0, r.stderr[-4000:]
    assert sorted(p.name for p in (out / "checkpoints").glob("step-*")) == STEPS
    return out


def copy_run(reference: Path, dest: Path) -> Path:
    shutil.copytree(reference, dest, symlinks=True)
    return dest


@pytest.mark.slow
def test_formats_are_safe_and_the_manifest_covers_every_file(reference):
    path = reference / "checkpoints" / "step-00000006"
    manifest = json.loads((path / ckpt.MANIFEST).read_text())
    on_disk = {str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()} - {ckpt.MANIFEST}
    assert set(manifest["files"]) == on_disk
    assert not [n for n in on_disk if n.endswith(".pt") or n.endswith(".pkl")]  # no pickled python objects
    assert any(n.startswith("model/") and n.endswith(".safetensors") for n in on_disk)
    for name in ("state.json", "scheduler.json", "rng-rank00000.json"):
        json.loads((path / name).read_text())
    for shard in (path / "optimizer").glob("*.bin"):  # the Booster's optimizer files: plain tensors only
        torch.load(shard, weights_only=True)
    assert ckpt.verify_checkpoint(path) == []


def test_no_unsafe_loading_anywhere_in_the_library():
    for f in (REPO / "src").rglob("*.py"):
        text = f.read_text(encoding="utf-8")
        assert "weights_only=False" not in text, f
        assert not re.search(r"\bpickle\.loads?\(|\bimport dill\b|\bjoblib\.load\(", text), f


DAMAGE = {
    "truncate": lambda p: p.write_bytes(p.read_bytes()[: max(1, p.stat().st_size // 2)]),
    "garbage": lambda p: p.write_bytes(os.urandom(p.stat().st_size)),
    "delete": lambda p: p.unlink(),
}


def _files_of(reference: Path) -> list[str]:
    path = reference / "checkpoints" / STEPS[-1]
    return sorted(json.loads((path / ckpt.MANIFEST).read_text())["files"])


@pytest.mark.slow
def test_every_damaged_file_is_found_and_resume_falls_back(reference, tmp_path):
    names = _files_of(reference)
    assert len(names) >= 7  # model shard + index, optimizer shard(s) + index + groups, state, scheduler, rng
    for damage in DAMAGE:
        for i, name in enumerate(names):
            if damage == "garbage" and not name.endswith((".safetensors", ".bin", ".json")):
                continue
            root = copy_run(reference, tmp_path / f"{damage}-{i}") / "checkpoints"
            DAMAGE[damage](root / STEPS[-1] / name)
            problems = ckpt.verify_checkpoint(root / STEPS[-1])
            assert problems and all(name in p for p in problems), (damage, name, problems)
            said = []
            chosen = ckpt.find_resume_checkpoint(root, log=said.append)
            assert chosen == root / STEPS[-2], (damage, name)
            assert len(said) == 1 and name in said[0] and f"resuming from {STEPS[-2]}" in said[0]
            aside = [p for p in root.iterdir() if p.name.startswith(f"corrupt-{STEPS[-1]}-")]
            assert len(aside) == 1  # kept for inspection, never deleted
            assert (root / "latest").read_text().strip() == STEPS[-2]
            for step in STEPS[:-1]:  # nothing earlier lost
                assert ckpt.verify_checkpoint(root / step) == []
            shutil.rmtree(root.parent)


@pytest.mark.slow
def test_a_missing_rng_file_is_named_as_missing_not_as_another_world_size(reference, tmp_path):
    root = copy_run(reference, tmp_path / "run") / "checkpoints"
    (root / STEPS[-1] / "rng-rank00000.json").unlink()
    said = []
    ckpt.find_resume_checkpoint(root, log=said.append)
    assert "rng-rank00000.json: missing" in said[0] and "world size" not in said[0]


@pytest.mark.slow
def test_no_intact_checkpoint_is_one_error_and_nothing_moves(reference, tmp_path):
    root = copy_run(reference, tmp_path / "run") / "checkpoints"
    for step in STEPS:
        DAMAGE["garbage"](root / step / "state.json")
    with pytest.raises(CheckpointError) as e:
        ckpt.find_resume_checkpoint(root)
    msg = str(e.value)
    assert "no intact checkpoint" in msg and all(step in msg for step in STEPS)
    assert sorted(p.name for p in root.glob("step-*")) == STEPS


@pytest.mark.slow
def test_marking_a_checkpoint_preempted_keeps_it_verifiable(reference, tmp_path):
    root = copy_run(reference, tmp_path / "run") / "checkpoints"
    ckpt.mark_preempted(root / STEPS[-1])
    assert ckpt.read_state(root / STEPS[-1])["preempted"] is True
    assert ckpt.verify_checkpoint(root / STEPS[-1]) == []


@pytest.mark.slow
def test_same_size_garbage_in_the_latest_weights_resumes_from_the_previous_one_exactly(inputs, reference,
                                                                                       tmp_path):
    out = copy_run(reference, tmp_path / "run")
    shutil.rmtree(out / "final")
    shard = next((out / "checkpoints" / STEPS[-1] / "model").glob("*.safetensors"))
    DAMAGE["garbage"](shard)
    r = train(inputs, out)
    assert r.returncode == 0, r.stderr[-4000:]
    assert f"checkpoint {out / 'checkpoints' / STEPS[-1]} is corrupt" in r.stderr
    assert f"resumed from {out / 'checkpoints' / STEPS[-2]} at step 9" in r.stderr
    assert final_bytes(out) == final_bytes(reference)  # the exact result of the uninterrupted run
    assert len(list((out / "checkpoints").glob(f"corrupt-{STEPS[-1]}-*"))) == 1


class _Payload:
    """Unpickling this runs a command (what a planted checkpoint file could do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.slow
def test_planted_pickle_payloads_never_run(inputs, reference, tmp_path):
    marker = tmp_path / "PWNED"
    out = copy_run(reference, tmp_path / "run")
    shutil.rmtree(out / "final")
    latest = out / "checkpoints" / STEPS[-1]
    # 1. the file the old format loaded with weights_only=False: not part of the format any more, never read
    (latest / "scheduler.pt").write_bytes(pickle.dumps(_Payload(marker)))
    for step in STEPS:  # 2. an optimizer shard replaced on every checkpoint, the manifests rewritten to match
        path = out / "checkpoints" / step
        shard = sorted((path / "optimizer").glob("*-0000*.bin"))[0]
        torch.save({"x": _Payload(marker)}, shard)
        manifest = json.loads((path / ckpt.MANIFEST).read_text())
        name = str(shard.relative_to(path))
        manifest["files"][name] = {"bytes": shard.stat().st_size, "sha256": ckpt.sha256_file(shard)}
        (path / ckpt.MANIFEST).write_text(json.dumps(manifest))
    r = train(inputs, out)
    assert not marker.exists(), "a pickle payload ran"
    assert r.returncode == 2, r.stderr[-3000:]
    assert "refused to load" in r.stderr and "tampered" in r.stderr and str(latest / "optimizer") in r.stderr
    assert sorted(p.name for p in (out / "checkpoints").glob("step-*")) == STEPS  # nothing moved or deleted


def test_non_finite_weights_are_refused_before_export(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 2))
    with torch.no_grad():
        model[1].weight[0, 0] = float("nan")
        model[1].bias[1] = float("inf")
    with pytest.raises(CheckpointError) as e:
        ckpt.export_final(None, model, None, tmp_path, tmp_path / "final", torch.float32)
    assert "1.weight (1 of 6 values)" in str(e.value) and "1.bias" in str(e.value) and "0.weight" not in str(e.value)
    assert not (tmp_path / "final").exists() and not (tmp_path / ".tmp-final").exists()
    with pytest.raises(CheckpointError, match="checkpoint of step 7"):
        ckpt.save_checkpoint(None, model, None, None, tmp_path / "checkpoints", 7, {}, 2)
    assert not (tmp_path / "checkpoints").exists()


@pytest.fixture
def small_tmpfs(tmp_path):
    mounts = []

    def mount(size_kib: int) -> Path:
        d = tmp_path / f"tmpfs-{len(mounts)}"
        d.mkdir()
        if os.geteuid() != 0:
            pytest.skip("mounting a small tmpfs (a real full disk) needs root; CI runs as root")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(d)], capture_output=True,
                           text=True)
        assert r.returncode == 0, f"mount -t tmpfs failed as root: {r.stderr.strip()}"
        mounts.append(d)
        return d

    yield mount
    for d in mounts:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


@pytest.mark.slow
def test_disk_full_during_a_save_is_enospc_with_the_path_and_nothing_earlier_lost(inputs, reference,
                                                                                  small_tmpfs):
    size = sum(f.stat().st_size for f in (reference / "checkpoints" / STEPS[0]).rglob("*") if f.is_file())
    disk = small_tmpfs(int(size * 1.6) // 1024 + 64)  # room for one checkpoint (and the small files), not two
    out = disk / "stage"
    r = train(inputs, out)
    assert r.returncode == 2, r.stderr[-3000:]
    assert "no space left on device (ENOSPC)" in r.stderr and str(out / "checkpoints" / ".tmp-step-00000006") in \
        r.stderr, r.stderr[-3000:]
    assert "the previous checkpoint" in r.stderr and "is intact" in r.stderr
    root = out / "checkpoints"
    assert (root / "latest").read_text().strip() == STEPS[0]
    assert ckpt.verify_checkpoint(root / STEPS[0]) == []
    assert not list(root.glob(".tmp-*")) and not (out / "final").exists()


def _catches(pid: int, signum: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), 16)
    return bool(mask >> (signum - 1) & 1)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc to see the signal handler")
def test_sigterm_before_the_first_step_says_nothing_was_saved(inputs, tmp_path):
    import signal
    import time

    model, data = inputs
    out = tmp_path / "stage"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO / "src"))
    p = subprocess.Popen([sys.executable, "-m", "cpt.train", "--model", str(model), "--dataset", str(data),
                          "--output", str(out), *SETTINGS], env=env, stderr=subprocess.PIPE, text=True, cwd=REPO)
    deadline = time.time() + 300
    while not _catches(p.pid, signal.SIGTERM):  # the trainer's preemption handler is in place
        assert p.poll() is None and time.time() < deadline, p.communicate()[1][-3000:]
        time.sleep(0.01)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 75, err[-3000:]
    assert "before the first step: nothing to save, no checkpoint written" in err
    assert "saved;" not in err
    assert not list(out.glob("checkpoints/step-*"))
