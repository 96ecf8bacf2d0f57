"""Training throughput (tokens/s) and MFU of `cpt.train` for a model shape and plugin, on random tokens.

    PYTHONPATH=src .venv/bin/python benchmarks/train_throughput.py --plugin ddp --nproc 2 \
        --vocab 32000 --hidden 128 --layers 4 --seq-len 512 --micro-batch 8 --steps 6 --json-out bench.json

Builds a random LLaMA of the shape in a temp dir, runs the real trainer (`--benchmark-seq-len`, like the
reference train.py --benchmark) under torchrun, prints a table and writes JSON. MFU needs a known GPU or
--peak-tflops.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from cpt.train.testing import make_tiny_model, torchrun_command  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plugin", default="ddp")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--nproc", type=int, default=1)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--micro-batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--grad-checkpointing", action="store_true")
    ap.add_argument("--peak-tflops", type=float, default=None)
    ap.add_argument("--json-out", default=None)
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        model = make_tiny_model(Path(tmp) / "model", vocab_size=a.vocab, hidden=a.hidden, layers=a.layers,
                                heads=a.heads, max_positions=max(a.seq_len, 512))
        train_args = ["--model", str(model), "--output", str(Path(tmp) / "out"), "--benchmark-seq-len",
                      str(a.seq_len), "--benchmark-steps", str(a.steps), "--no-progress",
                      "--set", f"plugin={a.plugin}", "--set", f"precision={a.precision}",
                      "--set", f"micro_batch_size={a.micro_batch}", "--set", f"max_length={a.seq_len}",
                      "--set", f"grad_checkpointing={'true' if a.grad_checkpointing else 'false'}"]
        if a.peak_tflops:
            train_args += ["--set", f"peak_tflops={a.peak_tflops}"]
        env = dict(os.environ, PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
        cmd = (torchrun_command(sys.executable, a.nproc, train_args) if a.nproc > 1
               else [sys.executable, "-m", "cpt.train", *train_args])
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            sys.stderr.write(r.stderr[-5000:])
            return r.returncode
        result = json.loads((Path(tmp) / "out" / "benchmark.json").read_text())
    result.update(vocab=a.vocab, hidden=a.hidden, layers=a.layers)
    print(f"{'plugin':8} {'prec':5} {'procs':5} {'shape (V/h/L)':16} {'seq x mb':9} {'tokens/s':>10} {'MFU':>7}")
    mfu = f"{result['mfu_median']:.2%}" if result.get("mfu_median") is not None else "n/a"
    print(f"{a.plugin:8} {a.precision:5} {a.nproc:<5} {f'{a.vocab}/{a.hidden}/{a.layers}':16} "
          f"{f'{a.seq_len}x{a.micro_batch}':9} {result['tokens_per_s_median']:>10,.0f} {mfu:>7}")
    if a.json_out:
        Path(a.json_out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
