"""cpt.core.locks: one writer per output (verbs, Snakemake scripts, the trainer), umask modes on everything written."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest

from cpt.core import locks
from cpt.core.errors import OutputLockedError

REPO = Path(__file__).resolve().parents[2]
HOLD = """
import sys, time
from cpt.core.locks import output_lock
with output_lock(sys.argv[1:]):
    print("held", flush=True)
    time.sleep(120)
"""


def env():
    return dict(os.environ, PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="1")


@pytest.fixture
def holder():
    procs = []

    def start(*paths):
        p = subprocess.Popen([sys.executable, "-c", HOLD, *map(str, paths)], stdout=subprocess.PIPE, text=True,
                             env=env())
        assert p.stdout.readline().strip() == "held"
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.kill()
        p.wait()


def test_second_writer_gets_one_clear_error_naming_output_and_holder(tmp_path, holder):
    out = tmp_path / "dataset" / "base"
    out.mkdir(parents=True)
    (out / "manifest.json").write_text("{}")
    p = holder(out)
    with pytest.raises(OutputLockedError) as e:
        with locks.writing([out]):
            (out / "manifest.json").write_text("clobbered")
    msg = str(e.value)
    assert str(out) in msg and f"pid {p.pid}" in msg and "nothing was changed" in msg
    assert (out / "manifest.json").read_text() == "{}"


def test_all_or_nothing_and_released_on_exit(tmp_path, holder):
    a, b = tmp_path / "a", tmp_path / "b"
    holder(b)
    with pytest.raises(OutputLockedError):
        with locks.output_lock([a, b]):
            pass
    with locks.output_lock([a]):  # a was released when b failed
        assert locks.lock_path(a).exists()
    assert not locks.lock_path(a).exists()  # the lock file is removed on release
    assert locks.ENV not in os.environ


def test_reentrant_and_inherited_by_children_but_not_by_strangers(tmp_path):
    out = tmp_path / "train" / "stage"
    probe = "import sys; from cpt.core.locks import output_lock\nwith output_lock([sys.argv[1]]): print('ok')"
    with locks.output_lock([out]):
        with locks.output_lock([out]):  # same process: re-entrant
            pass
        assert locks.lock_path(out).exists()
        child = subprocess.run([sys.executable, "-c", probe, str(out)], capture_output=True, text=True, env={
            **env(), locks.ENV: os.environ[locks.ENV]})  # a child process (torchrun's workers) inherits it
        assert child.returncode == 0 and child.stdout.strip() == "ok", child.stderr
        stranger = subprocess.run([sys.executable, "-c", probe, str(out)], capture_output=True, text=True,
                                  env={k: v for k, v in env().items() if k != locks.ENV})
        assert stranger.returncode != 0 and "OutputLockedError" in stranger.stderr


def test_a_killed_holder_leaves_no_stale_lock(tmp_path, holder):
    out = tmp_path / "x"
    p = holder(out)
    p.kill()
    p.wait()
    assert locks.lock_path(out).exists()  # the file stays, the kernel dropped the lock
    with locks.output_lock([out]):
        pass


def test_umask_modes_for_files_written_0600(tmp_path):
    d = tmp_path / "model"
    d.mkdir()
    f = d / "model.safetensors"
    f.write_bytes(b"x")
    os.chmod(f, 0o600)
    os.chmod(d, 0o700)
    old = os.umask(0o027)
    try:
        with locks.writing([d]):
            pass
    finally:
        os.umask(old)
    assert stat.S_IMODE(f.stat().st_mode) == 0o640 and stat.S_IMODE(d.stat().st_mode) == 0o750


def test_safetensors_save_file_is_0600_and_writing_fixes_it(tmp_path):
    """The reason this exists: the pinned safetensors writes 0600 whatever the umask."""
    import torch
    from safetensors.torch import save_file

    old = os.umask(0o022)
    try:
        with locks.writing([tmp_path / "out"]):
            (tmp_path / "out").mkdir()
            save_file({"w": torch.zeros(2)}, tmp_path / "out" / "w.safetensors")
            raw = stat.S_IMODE((tmp_path / "out" / "w.safetensors").stat().st_mode)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out" / "w.safetensors").stat().st_mode) == 0o644
    if raw == 0o644:
        pytest.fail("safetensors now honours the umask: cpt.core.locks.honour_umask may no longer be needed")


def test_every_verb_declares_its_outputs():
    import importlib

    from cpt.cli import COMMANDS, OUTPUTS

    assert set(OUTPUTS) == set(COMMANDS)
    for verb, (target, _) in COMMANDS.items():
        module, attr = target.split(":")
        cmd = getattr(importlib.import_module(module), attr)
        names = {p.name for p in cmd.params}
        assert set(OUTPUTS[verb]) <= names, (verb, set(OUTPUTS[verb]) - names)
        # every path option that may name something new is an output (or an input checked to exist)
        for p in cmd.params:
            if isinstance(p.type, click.Path) and not p.type.exists and p.name not in OUTPUTS[verb]:
                assert p.name in {"config", "model", "dataset"}, (verb, p.name)


def test_cli_verb_refused_while_its_output_is_locked(tmp_path, holder):
    out = tmp_path / "idioms"
    holder(out)
    r = subprocess.run([sys.executable, "-m", "cpt.cli", "idioms-set", "--out", str(out)], capture_output=True,
                       text=True, env=env(), timeout=120)
    assert r.returncode == 2, r.stderr
    assert f"error: {out}: pid " in r.stderr and "is writing this output" in r.stderr
    assert not out.exists()


@pytest.mark.slow
def test_race_two_prepare_pretrain_writers(tmp_path):
    """Two `cpt prepare-pretrain` into one directory: one succeeds, the other stops at once with the lock error;
    the result equals a run alone."""
    from _dataset_support import build_tokenizer, random_corpus

    tok = build_tokenizer(tmp_path / "tok")
    (tmp_path / "in").mkdir()
    random_corpus(tmp_path / "in" / "c.jsonl", 2000, seed=1)

    def cmd(out):
        return [sys.executable, "-m", "cpt.cli", "prepare-pretrain", "--data_input_dirs", str(tmp_path / "in"),
                "--tokenizer_dir", str(tok), "--data_output_dirs", str(out), "--max_length", "256",
                "--num_spliced_dataset_bins", "2", "--on_bad_record", "skip", "--no_progress"]

    out = tmp_path / "out"
    first = subprocess.Popen(cmd(out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
    lock = locks.lock_path(out)
    deadline = time.time() + 120
    while time.time() < deadline and first.poll() is None:
        if lock.exists() and lock.read_text():  # the holder wrote its identity: it holds the lock
            break
        time.sleep(0.005)
    assert first.poll() is None, "the first writer finished before the race could start; use a larger input"
    second = subprocess.run(cmd(out), capture_output=True, text=True, env=env(), timeout=300)
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-3000:]
    assert second.returncode == 2 and "is writing this output" in second.stderr, second.stderr[-3000:]
    assert f"pid {first.pid}" in second.stderr
    alone = tmp_path / "alone"
    subprocess.run(cmd(alone), check=True, capture_output=True, env=env(), timeout=300)
    a, b = json.loads((out / "manifest.json").read_text()), json.loads((alone / "manifest.json").read_text())
    for m in (a, b):
        m.pop("output", None)
        m.pop("created", None)
    assert a["buckets"] == b["buckets"] and a["num_tokens"] == b["num_tokens"] > 0
    for name in a["buckets"]:
        for f in sorted((alone / name).iterdir()):
            assert (out / name / f.name).read_bytes() == f.read_bytes(), f.name
