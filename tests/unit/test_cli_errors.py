"""`cpt` error reporting: exit code 2 for every input error (as the README says), hints added with add_note shown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def cpt(*args, cwd=None):
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "cpt.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300, cwd=cwd)


def test_validate_records_exits_2_on_a_bad_line_and_with_skip(tmp_path):
    good = json.dumps({"source": "", "target": "text", "category": "c"})
    f = tmp_path / "a.jsonl"
    f.write_text(good + "\n" + '{"source": "", "target": 3, "category": "c"}\n')
    r = cpt("validate-records", f)
    assert r.returncode == 2 and f"error: {f}:2: ill_typed" in r.stderr
    r = cpt("validate-records", "--skip", f)
    assert r.returncode == 2 and "ill_typed" in r.stdout and "records 1" in r.stdout
    f.write_text(good + "\n")
    assert cpt("validate-records", f).returncode == 0


def test_add_note_hints_are_printed(tmp_path):
    from _dataset_support import build_tokenizer

    tok = build_tokenizer(tmp_path / "tok")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_text('{"source": "", "target": " ", "category": "c"}\n')
    r = cpt("prepare-pretrain", "--data_input_dirs", tmp_path / "in", "--tokenizer_dir", tok,
            "--data_output_dirs", tmp_path / "out", "--no_progress")
    assert r.returncode == 2, r.stderr[-2000:]
    assert "a.jsonl:1: empty_target" in r.stderr
    assert "dataset.on_bad_record: skip" in r.stderr  # the note, on the line after the message
