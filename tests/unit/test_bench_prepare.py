"""benchmarks/prepare_pretrain.py's measuring parts: the reference is taken from a git repository's HEAD at run
time (never copied into the project), and a run's peak memory counts its whole process tree."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_prepare", REPO / "benchmarks" / "prepare_pretrain.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_reference_extracted_from_head_of_a_git_repository(tmp_path):
    bench = _bench()
    src = tmp_path / "src"
    app = src / bench.REF_APP / "dataset"
    app.mkdir(parents=True)
    (app / "prepare_pretrain_dataset.py").write_text("print('v1')\n")
    git = ["git", "-C", str(src), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(git[:3] + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-qm", "v1"], check=True)
    (app / "prepare_pretrain_dataset.py").write_text("print('uncommitted')\n")   # not HEAD: not taken
    out, commit = bench.extract_reference(str(src / ".git"), tmp_path / "x")
    assert (out / "dataset" / "prepare_pretrain_dataset.py").read_text() == "print('v1')\n"
    assert len(commit) == 40


def test_timed_counts_the_process_tree(tmp_path):
    bench = _bench()
    # a parent that starts a child holding ~200 MB: the peak must include the child's memory
    code = ("import subprocess, sys; subprocess.run([sys.executable, '-c', "
            "'import time; b = bytearray(200 * 2**20); b[::4096] = b\"x\" * len(b[::4096]); time.sleep(1.0)'])")
    r = bench.timed([sys.executable, "-c", code], {}, tmp_path / "log")
    assert r["peak_rss_mb"] >= 200 and r["peak_anon_mb"] >= 200
    assert r["seconds"] >= 1.0
