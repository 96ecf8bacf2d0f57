"""Training throughput (tokens/s, tokens/s/GPU), MFU and peak memory of `cpt.train` for a model shape and plugin,
on random tokens.

    PYTHONPATH=src .venv/bin/python benchmarks/train_throughput.py --plugin ddp --nproc 2 \
        --vocab 32000 --hidden 128 --layers 4 --seq-len 512 --micro-batch 8 --steps 6 --json-out bench.json

Builds a random LLaMA of the shape in a temp dir (or uses `--model DIR`; `--make-model DIR` builds one and keeps
it, so several runs share it), runs the real trainer (`--benchmark-seq-len`, like the reference train.py
--benchmark) under torchrun, prints a table and writes JSON (including the attention implementation that ran,
gradient checkpointing, and the peak memory of the busiest rank, from the stage's run.json). MFU needs a known
GPU or --peak-tflops.

`--engine torch` trains with PyTorch's own engine (`--set engine=torch` on cpt's train entry); `--model-config
FILE --make-model DIR` builds random weights of a given HF config.json (a real model's shape without its weights).
The child processes get this checkout's src first on PYTHONPATH, ahead of what PYTHONPATH already holds (the GPU
kit's lanes, benchmarks/gpu_check.sh --kit).

`--dry-run` builds nothing and runs nothing: it validates the training settings (TrainConfig) and, for the
ColossalAI engine, the plugin arguments for a CUDA device (what a GPU run would construct) and prints the command
line it would run. `merge FILE... --json-out OUT` combines several results into one JSON and prints them as one
table (cases that did not run, with a "status" and "reason", as one line each).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from cpt.testing import make_tiny_model, torchrun_command  # noqa: E402

HEADER = (f"{'label':28} {'engine':10} {'plugin':7} {'prec':5} {'gc':3} {'attention':24} {'procs':5} {'V/h/L':16} "
          f"{'seq x mb':9} {'thr':>3} {'tok/s/GPU':>10} {'MFU':>7} {'peak GiB':>9}")


def row(r: dict) -> str:
    if r.get("status", "ok") != "ok":
        return f"{r.get('label', ''):28} {r.get('engine', ''):10} {r['status']}: {r.get('reason', '')}"
    mfu = f"{r['mfu_median']:.2%}" if r.get("mfu_median") is not None else "n/a"
    peak = f"{r['peak_memory_bytes'] / 2**30:.1f}" if r.get("peak_memory_bytes") else "n/a"
    gc = "on" if r.get("grad_checkpointing") else "off"
    shape = f"{r['vocab']}/{r['hidden']}/{r['layers']}"
    seq = f"{r['seq_len']}x{r['micro_batch_size']}"
    return (f"{r.get('label', ''):28} {r.get('engine', 'colossalai'):10} {r['plugin']:7} {r['precision']:5} {gc:3} "
            f"{str(r.get('attention')):24} "
            f"{r['world_size']:<5} {shape:16} {seq:9} {str(r.get('rank_threads', '')):>3} "
            f"{r['tokens_per_s_per_device']:>10,.0f} {mfu:>7} {peak:>9}")


def parse(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--label", default="")
    ap.add_argument("--plugin", default="ddp")
    ap.add_argument("--engine", choices=("colossalai", "torch"), default="colossalai",
                    help="torch: PyTorch's own engine (adds --set engine=torch unless an --set names the engine)")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--nproc", type=int, default=1)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--intermediate", type=int, default=None, help="MLP width (default 2 x hidden; 7B: 11008)")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--micro-batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--grad-checkpointing", action="store_true")
    ap.add_argument("--flash-attention", choices=("on", "off"), default="off",
                    help="train.flash_attention (flash_attention_2 when installed on a GPU, else SDPA)")
    ap.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE",
                    help="any further training key")
    ap.add_argument("--peak-tflops", type=float, default=None)
    ap.add_argument("--model", default=None, help="use this HF model dir instead of building one")
    ap.add_argument("--make-model", default=None, help="build the model of the shape here, keep it, and use it")
    ap.add_argument("--model-dtype", choices=("fp32", "bf16"), default="fp32", help="dtype of the built model files")
    ap.add_argument("--model-config", default=None,
                    help="with --make-model: random weights of this HF config.json instead of the shape arguments")
    ap.add_argument("--rank-threads", type=int, default=None,
                    help="CPU threads of each rank (OMP/MKL_NUM_THREADS; default: $OMP_NUM_THREADS, else 1)")
    ap.add_argument("--timeout", type=float, default=None, help="seconds before the run is stopped")
    ap.add_argument("--json-out", default=None)
    ap.add_argument("--dry-run", action="store_true")
    return ap.parse_args(argv)


def train_settings(a) -> list[str]:
    sets = {"plugin": a.plugin, "precision": a.precision, "micro_batch_size": a.micro_batch, "max_length": a.seq_len,
            "grad_checkpointing": "true" if a.grad_checkpointing else "false",
            "flash_attention": "true" if a.flash_attention == "on" else "false", "tensorboard": "false"}
    if a.peak_tflops:
        sets["peak_tflops"] = a.peak_tflops
    out = [x for k, v in sets.items() for x in ("--set", f"{k}={v}")]
    if a.engine != "colossalai" and not any(item.startswith("engine=") for item in a.extra):
        out += ["--set", f"engine={a.engine}"]
    for item in a.extra:
        out += ["--set", item]
    return out


def dry_run(a, cmd: list[str]) -> int:
    """Validate what the run would do, without building or starting anything."""
    from cpt.train.config import load_config
    from cpt.train.plugins import plugin_spec

    cfg = load_config(None, [cmd[i + 1] for i, x in enumerate(cmd) if x == "--set"])
    if a.model and not a.make_model and not (Path(a.model) / "config.json").is_file():
        print(f"note: --model {a.model} does not exist yet (an earlier step builds it)", file=sys.stderr)
    if a.model_config and not Path(a.model_config).is_file():
        raise FileNotFoundError(f"--model-config {a.model_config}: no such file")
    if a.engine == "torch":  # its settings are validated by load_config; the plugin specs are ColossalAI's
        print(f"ok: engine=torch plugin={cfg.plugin} precision={cfg.precision} "
              f"grad_checkpointing={cfg.grad_checkpointing} flash_attention={cfg.flash_attention}")
    else:
        name, kwargs = plugin_spec(cfg, "cuda", vocab_size=a.vocab)
        print(f"ok: {name}({', '.join(f'{k}={v!r}' for k, v in sorted(kwargs.items()))})")
    print("+ " + shlex.join(cmd))
    return 0


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "merge":
        return merge(argv[1:])
    a = parse(argv)
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(a.make_model or a.model or Path(tmp) / "model")
        out = Path(tmp) / "out"
        train_args = ["--model", str(model), "--output", str(out), "--benchmark-seq-len", str(a.seq_len),
                      "--benchmark-steps", str(a.steps), "--no-progress", *train_settings(a)]
        cmd = (torchrun_command(sys.executable, a.nproc, train_args) if a.nproc > 1
               else [sys.executable, "-m", "cpt.train", *train_args])
        if a.dry_run:
            from cpt.core.errors import CptError

            try:
                return dry_run(a, cmd)
            except (CptError, FileNotFoundError) as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
        if a.make_model and a.model_config:
            make_model_from_config(model, Path(a.model_config), a.model_dtype)
        elif a.make_model or not a.model:
            import torch

            make_tiny_model(model, vocab_size=a.vocab, hidden=a.hidden, layers=a.layers, heads=a.heads,
                            intermediate=a.intermediate, max_positions=max(a.seq_len, 512),
                            dtype=torch.bfloat16 if a.model_dtype == "bf16" else torch.float32)
        threads = str(a.rank_threads or os.environ.get("OMP_NUM_THREADS", "1"))
        pythonpath = os.pathsep.join(x for x in (str(REPO / "src"), os.environ.get("PYTHONPATH", "")) if x)
        env = dict(os.environ, PYTHONPATH=pythonpath, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
        try:
            r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=a.timeout)
        except subprocess.TimeoutExpired:
            print(f"timed out after {a.timeout} s: {shlex.join(cmd)}", file=sys.stderr)
            return 124
        if r.returncode != 0:
            sys.stderr.write(r.stderr[-5000:])
            return r.returncode
        result = json.loads((out / "benchmark.json").read_text())
        trainer = json.loads((out / "run.json").read_text()).get("trainer", {})
    shape = dict(vocab=a.vocab, hidden=a.hidden, layers=a.layers, intermediate=a.intermediate or 2 * a.hidden,
                 heads=a.heads)
    given = (Path(a.model_config) if a.model_config and a.make_model
             else Path(a.model) / "config.json" if a.model and not a.make_model else None)
    if given is not None:  # a given model or config: its own shape, not the (unused) shape arguments
        hf = json.loads(given.read_text())
        shape = dict(vocab=hf["vocab_size"], hidden=hf["hidden_size"], layers=hf["num_hidden_layers"],
                     intermediate=hf.get("intermediate_size"), heads=hf.get("num_attention_heads"))
    result.update(label=a.label, engine=a.engine, status="ok", **shape, rank_threads=int(threads),
                  tokens_per_s_per_device=result["tokens_per_s_median"] / result["world_size"],
                  attention=trainer.get("attention"), grad_checkpointing=trainer.get("gradient_checkpointing"),
                  peak_memory_bytes=trainer.get("peak_memory_bytes_max_rank"), device_name=trainer.get("device_name"),
                  params_total=trainer.get("params_model_total"))
    print(HEADER)
    print(row(result))
    if a.json_out:
        Path(a.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json_out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def make_model_from_config(out: Path, config: Path, dtype: str) -> Path:
    """Random weights (seeded) of the model an HF config.json describes, saved as safetensors."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    cfg = AutoConfig.from_pretrained(config)
    model = AutoModelForCausalLM.from_config(cfg)
    if dtype == "bf16":
        model = model.to(torch.bfloat16)
    model.save_pretrained(out, safe_serialization=True)
    return out


def merge(argv) -> int:
    ap = argparse.ArgumentParser(prog="train_throughput.py merge")
    ap.add_argument("files", nargs="*")
    ap.add_argument("--json-out", required=True)
    ap.add_argument("--extra-json", default=None, help="a JSON object merged in at the top level (device, steps)")
    a = ap.parse_args(argv)
    runs = [json.loads(Path(f).read_text()) for f in a.files if Path(f).is_file()]
    doc = json.loads(Path(a.extra_json).read_text()) if a.extra_json and Path(a.extra_json).is_file() else {}
    doc["runs"] = runs
    Path(a.json_out).write_text(json.dumps(doc, indent=2) + "\n")
    print(HEADER)
    for r in runs:
        print(row(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
