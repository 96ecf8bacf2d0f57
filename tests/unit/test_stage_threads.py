"""A training rule's CPUs are shared between its ranks: each rank gets the rule's threads divided by the ranks
(Snakemake sets OMP_NUM_THREADS to the rule's threads; passed on unchanged, 2 ranks x 2 threads oversubscribed
2 cores and trained 4.3x slower)."""

import json
import os
import sys
import textwrap

import pytest

from cpt.launch.resources import THREAD_VARS
from cpt.launch.stage import rank_threads_env, run_stage


@pytest.mark.parametrize("budget, nproc, expected", [("2", 2, "1"), ("8", 2, "4"), ("16", 8, "2"), ("3", 2, "1"),
                                                      ("1", 4, "1"), ("6", 1, "6")])
def test_the_rule_threads_are_divided_between_the_ranks(budget, nproc, expected):
    env = rank_threads_env({"OMP_NUM_THREADS": budget}, nproc)
    assert set(env) == set(THREAD_VARS)
    assert set(env.values()) == {expected}


def test_without_a_budget_the_machine_cpus_are_divided():
    cpus = len(os.sched_getaffinity(0))
    for raw in ({}, {"OMP_NUM_THREADS": ""}, {"OMP_NUM_THREADS": "many"}, {"OMP_NUM_THREADS": "0"}):
        assert rank_threads_env(raw, 2)["OMP_NUM_THREADS"] == str(max(1, cpus // 2))


def test_a_slurm_task_shares_its_cpus_per_task():
    """In a SLURM job the ranks run in one srun task of cpus_per_task CPUs; Snakemake's threads (the ranks per
    node) do not say how many CPUs that task has."""
    env = rank_threads_env({"SLURM_CPUS_PER_TASK": "16", "OMP_NUM_THREADS": "8"}, 8)
    assert env["OMP_NUM_THREADS"] == "2"


def test_run_stage_starts_the_ranks_with_their_share(tmp_path, monkeypatch):
    """The launched command sees the divided settings, not the rule's budget (a stand-in trainer records its
    environment and writes the final model's config)."""
    out = tmp_path / "stage"
    model, dataset = tmp_path / "model", tmp_path / "dataset"
    model.mkdir(), dataset.mkdir()
    script = textwrap.dedent(f"""
        import json, os, pathlib
        final = pathlib.Path({str(out)!r}) / "final"
        final.mkdir(parents=True, exist_ok=True)
        (final / "config.json").write_text(json.dumps({{k: os.environ.get(k) for k in {list(THREAD_VARS)!r}}}))
    """)
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    monkeypatch.setenv("MKL_NUM_THREADS", "4")
    run_stage({}, model, dataset, out, nproc=2, launcher=lambda nproc, args: [sys.executable, "-c", script])
    seen = json.loads((out / "final" / "config.json").read_text())
    assert seen == {k: "2" for k in THREAD_VARS}


@pytest.mark.parametrize("marked, expected", [(True, r"preempted after a checkpoint \(launcher exit code 143\)"),
                                              (False, "training exited with code 143")])
def test_a_preempted_checkpoint_of_this_launch_means_preempted_whatever_srun_returns(tmp_path, marked, expected):
    """On two nodes srun returns 143 when the first node's wrapper exits 75 and --kill-on-bad-exit terminates the
    other: the checkpoint written and marked preempted by this launch decides, not the code."""
    from cpt.core.errors import TrainError

    out = tmp_path / "stage"
    model, dataset = tmp_path / "model", tmp_path / "dataset"
    model.mkdir(), dataset.mkdir()
    script = textwrap.dedent(f"""
        import json, pathlib, sys
        ckpt = pathlib.Path({str(out)!r}) / "checkpoints" / "step-00000003"
        ckpt.mkdir(parents=True)
        (ckpt / "state.json").write_text(json.dumps({{"step": 3, "preempted": {marked!r}}}))
        (ckpt.parent / "latest").write_text(ckpt.name)
        sys.exit(143)
    """)
    with pytest.raises(TrainError, match=expected):
        run_stage({}, model, dataset, out, nproc=1, launcher=lambda nproc, args: [sys.executable, "-c", script])


def test_an_attempt_killed_before_its_launch_returned_is_named_by_the_next(tmp_path, capfd):
    """The stage keeps an open `launch` record in run.json while the launch runs; a process killed with it (as
    when the node running a SLURM batch script is lost) never closes it, and the next attempt says so."""
    import signal
    import subprocess
    import time

    out = tmp_path / "stage"
    model, dataset = tmp_path / "model", tmp_path / "dataset"
    model.mkdir(), dataset.mkdir()
    code = textwrap.dedent(f"""
        import sys
        from cpt.launch.stage import run_stage
        run_stage({{}}, {str(model)!r}, {str(dataset)!r}, {str(out)!r}, nproc=1,
                  launcher=lambda nproc, args: [sys.executable, "-c", "import time; time.sleep(60)"])
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    first = subprocess.Popen([sys.executable, "-c", code], env=env)
    deadline = time.time() + 60
    while "launch" not in (json.loads((out / "run.json").read_text()) if (out / "run.json").is_file() else {}):
        assert first.poll() is None and time.time() < deadline
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    record = json.loads((out / "run.json").read_text())["launch"]
    assert record["pid"] == first.pid and "exit_code" not in record

    done = textwrap.dedent(f"""
        import pathlib
        final = pathlib.Path({str(out)!r}) / "final"
        final.mkdir(parents=True, exist_ok=True)
        (final / "config.json").write_text("{{}}")
    """)
    capfd.readouterr()
    run_stage({}, model, dataset, out, nproc=1, launcher=lambda nproc, args: [sys.executable, "-c", done])
    err = capfd.readouterr().err
    assert f"{out}: the previous attempt (pid {first.pid} on " in err
    assert "ended without its launch returning (killed, or its host lost); resuming from the latest verified" in err
    assert json.loads((out / "run.json").read_text())["launch"]["exit_code"] == 0  # closed this time
