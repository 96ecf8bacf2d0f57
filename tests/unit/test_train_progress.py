"""cpt.train.progress: rank 0's progress lines, warnings once, rank 0's stderr into the rule log."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

from cpt.train.progress import ProgressLog

REPO = Path(__file__).resolve().parents[2]
LINE = (r"train step (\d+)/18 \([\d.]+%\) \| tokens [\d,]+ \| loss 2\.5000 \| lr 1\.000e-03 \| [\d,]+ tokens/s \| "
        r"elapsed \d+:\d\d:\d\d \| ETA \d+:\d\d:\d\d")


def test_a_line_every_n_steps_at_the_end_and_at_each_checkpoint():
    buf = io.StringIO()
    log = ProgressLog(True, 18, 4, 100, 10, stream=buf)
    for step in range(5, 19):
        log.step({"step": step, "tokens": 100 + 50 * step, "loss": 2.5, "lr": 1e-3, "tokens_per_s": 10.0})
        if step % 4 == 0 or step == 18:
            log.checkpoint(f"ck/step-{step:08d}", 0.25)
    text = buf.getvalue()
    assert [int(s) for s in re.findall(LINE, text)] == [8, 10, 12, 16, 18]  # interval 10, the last step, checkpoints
    assert "train step 12/18 (66.7%)" in text and "| checkpoint ck/step-00000012 written in 0.2 s" in text
    assert text.splitlines()[-1] == "train step 18/18 | checkpoint ck/step-00000018 written in 0.2 s"
    quiet = io.StringIO()
    other = ProgressLog(False, 18, 0, 0, 1, stream=quiet)  # ranks other than 0
    other.step({"step": 1, "tokens": 1, "loss": 1.0, "lr": 1.0})
    assert quiet.getvalue() == ""


PROBE = """
import sys, warnings
from cpt.train.progress import setup_rank_output
setup_rank_output()
warnings.warn("library says something")
print("error line", file=sys.stderr)
"""


def test_warnings_once_and_rank0_stderr_in_the_rule_log(tmp_path):
    log = tmp_path / "rule.log"
    log.write_text("launch line\n")
    outs = {}
    for rank in (0, 1):
        env = dict(os.environ, PYTHONPATH=str(REPO / "src"), RANK=str(rank), CPT_LOG_FILE=str(log))
        outs[rank] = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env).stderr
    assert "library says something" in outs[0] and "library says something" not in outs[1]
    assert "error line" in outs[1]  # errors still show on every rank
    text = log.read_text()
    assert text.startswith("launch line\n") and text.count("library says something") == 1
    assert text.count("error line") == 1  # rank 0's stderr only
