"""The clean rules under real Snakemake: prepare per category, one finalize, outputs the corpus split can read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.workflow
def test_clean_rules_run_and_balance(tmp_path):
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text(encoding="utf-8"))
    cfg["experiment"] = "cleanwf"
    for c in cfg["corpus"]["categories"].values():
        c["max_chars"] = min(c["max_chars"], 8000)
    cfg["clean"]["enabled"] = True
    cfg["clean"]["workers"] = 1
    conf = tmp_path / "config.yaml"
    conf.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    snakemake = Path(sys.executable).with_name("snakemake")
    out = tmp_path / "results" / "cleanwf" / "clean"
    cmd = [str(snakemake), "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), str(out.relative_to(tmp_path)),
           "--cores", "2", "--configfile", str(conf)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert set(report["categories"]) == set(cfg["corpus"]["categories"])
    for cat, r in report["categories"].items():
        n = sum(1 for _ in (out / f"{cat}.jsonl").open(encoding="utf-8"))
        assert n == r["kept"] and r["input"] == r["kept"] + sum(r["dropped"].values())
        raw = tmp_path / "results" / "cleanwf" / "corpus" / "raw" / f"{cat}.jsonl"
        assert r["input"] == sum(1 for line in raw.open(encoding="utf-8") if line.strip())
    assert (out / "provenance.json").is_file() and (out / "report.md").is_file()
    assert not (tmp_path / "results" / "cleanwf" / "clean-work").exists() or \
        not any((tmp_path / "results" / "cleanwf" / "clean-work").iterdir())  # temp() work dirs removed
    # nothing to do on a rerun
    res = subprocess.run(cmd + ["-n"], capture_output=True, text=True, env=env, timeout=300)
    assert "Nothing to be done" in res.stdout + res.stderr
