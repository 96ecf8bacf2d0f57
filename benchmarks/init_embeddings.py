"""Benchmark: extend 7B-shaped embeddings (32,000 x 4096, bf16, safetensors) to 69,104 rows with subword_mean.

Builds, in a scratch directory:
- a synthetic 32,000-piece LLaMA-style SentencePiece BPE model (3 specials, 256 byte pieces, "▁", 3,500 CJK
  characters, the rest random Latin pieces) and its extension by 37,104 CJK words of 2-4 characters (the published
  Colossal-LLaMA-2 sizes), both as HF tokenizer directories;
- a synthetic LLaMA directory with 7B-shaped embeddings and ONE transformer layer (bf16), sharded like the HF
  LLaMA-2 checkpoints: shard 1 = embed_tokens + layer 0, shard 2 = lm_head + final norm.

Then runs `cpt.model.init.init_embeddings` in a child process (torch limited to --threads) and reports its wall time
and peak RSS (ru_maxrss of the child). Optionally (--reference-rows N) it times the reference init_model.py
algorithm (per new row: slow HF tokenizer call, mean of the rows, np.concatenate onto the growing fp32 matrix; the
model on CPU here) on the first N new rows and extrapolates its total: the per-row cost grows linearly with the
matrix, so total = sum over rows of t0 * rows_so_far / rows_at_start. Prints a table and writes JSON.

    PYTHONPATH=src python benchmarks/init_embeddings.py --out benchmarks/results/init_embeddings.json
Targets (issue): under 60 s and under 4 GB peak RSS on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N_OLD, N_TOTAL, HIDDEN, INTERMEDIATE = 32000, 69104, 4096, 11008
TOKENIZER_CONFIG = {"tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "add_eos_token": False,
                    "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "legacy": False}


def build_tokenizers(root: Path, seed: int = 0) -> tuple[Path, Path]:
    from cpt.tokenizer.spm import BYTE, CONTROL, NORMAL, UNKNOWN, llama_proto, save_proto

    rng = random.Random(seed)
    table: list[tuple[str, float, int]] = []  # (piece, score, type) of a LLaMA-style model (cpt.tokenizer.spm)

    def add(piece, score, kind=NORMAL):
        table.append((piece, score, kind))

    add("<unk>", 0.0, UNKNOWN)
    add("<s>", 0.0, CONTROL)
    add("</s>", 0.0, CONTROL)
    for b in range(256):
        add(f"<0x{b:02X}>", 0.0, BYTE)
    chars = [chr(c) for c in rng.sample(range(0x4E00, 0x9FA6), 3500)]
    have = {p for p, _, _ in table}
    add("\u2581", -1.0)
    for i, c in enumerate(chars):
        add(c, -2.0 - i)
    have |= {"\u2581", *chars}
    letters = "abcdefghijklmnopqrstuvwxyz"
    while len(table) < N_OLD:
        w = ("\u2581" if rng.random() < 0.6 else "") + "".join(rng.choice(letters) for _ in range(rng.randint(2, 8)))
        if w not in have:
            have.add(w)
            add(w, -10.0 - len(table))
    base = root / "tok-base"
    save_proto(llama_proto(*zip(*table)), base / "tokenizer.model")
    new = []
    while len(new) < N_TOTAL - N_OLD:
        w = "".join(rng.choice(chars) for _ in range(rng.randint(2, 4)))
        if w not in have:
            have.add(w)
            new.append(w)
    for w in sorted(new, key=len):  # the reference's order: by length, stable
        add(w, 0.0)
    ext = root / "tok-ext"
    save_proto(llama_proto(*zip(*table)), ext / "tokenizer.model")
    for d in (base, ext):
        (d / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG))
        (d / "special_tokens_map.json").write_text(json.dumps({"bos_token": "<s>", "eos_token": "</s>",
                                                               "unk_token": "<unk>"}))
    return base, ext


def build_model(root: Path, tokenizer: Path, seed: int = 0, layers: int = 1) -> Path:
    import torch
    from safetensors.torch import save_file

    out = root / "model"
    out.mkdir()
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape):
        return (torch.randn(*shape, generator=g) * 0.02).to(torch.bfloat16)

    layer = {
        "self_attn.q_proj.weight": (HIDDEN, HIDDEN), "self_attn.k_proj.weight": (HIDDEN, HIDDEN),
        "self_attn.v_proj.weight": (HIDDEN, HIDDEN), "self_attn.o_proj.weight": (HIDDEN, HIDDEN),
        "mlp.gate_proj.weight": (INTERMEDIATE, HIDDEN), "mlp.up_proj.weight": (INTERMEDIATE, HIDDEN),
        "mlp.down_proj.weight": (HIDDEN, INTERMEDIATE),
    }
    s1 = {"model.embed_tokens.weight": rnd(N_OLD, HIDDEN)}
    for i in range(layers):  # all layers in shard 1, next to embed_tokens: the shard that must be rewritten
        s1.update({f"model.layers.{i}.{k}": rnd(*v) for k, v in layer.items()})
        s1[f"model.layers.{i}.input_layernorm.weight"] = torch.ones(HIDDEN, dtype=torch.bfloat16)
        s1[f"model.layers.{i}.post_attention_layernorm.weight"] = torch.ones(HIDDEN, dtype=torch.bfloat16)
    save_file(s1, str(out / "model-00001-of-00002.safetensors"), metadata={"format": "pt"})
    wm = {k: "model-00001-of-00002.safetensors" for k in s1}
    total = sum(t.numel() * 2 for t in s1.values())
    del s1
    s2 = {"lm_head.weight": rnd(N_OLD, HIDDEN), "model.norm.weight": torch.ones(HIDDEN, dtype=torch.bfloat16)}
    save_file(s2, str(out / "model-00002-of-00002.safetensors"), metadata={"format": "pt"})
    wm.update({k: "model-00002-of-00002.safetensors" for k in s2})
    total += sum(t.numel() * 2 for t in s2.values())
    (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": wm}))
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": HIDDEN,
           "intermediate_size": INTERMEDIATE, "num_hidden_layers": layers, "num_attention_heads": 32,
           "num_key_value_heads": 32, "max_position_embeddings": 4096, "rms_norm_eps": 1e-5,
           "vocab_size": N_OLD, "bos_token_id": 1, "eos_token_id": 2, "tie_word_embeddings": False,
           "torch_dtype": "bfloat16", "hidden_act": "silu", "rope_theta": 10000.0}
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    for f in ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(tokenizer / f, out / f)
    return out


CHILD = """
import json, sys, time, torch
torch.set_num_threads({threads})
from cpt.model.init import init_embeddings
t = time.time()
s = init_embeddings({src!r}, {base!r}, {ext!r}, {out!r}, method={method!r}, pad_to_multiple_of={pad!r})
print(json.dumps({{"wall_s": time.time() - t, "summary": {{k: v for k, v in s.items() if k != "tensors"}}}}))
"""

REFERENCE_CHILD = """
import json, time, numpy as np, torch
torch.set_num_threads({threads})
from safetensors import safe_open
from transformers import LlamaTokenizer
old = LlamaTokenizer.from_pretrained({base!r}); old.add_bos_token = False; old.add_eos_token = False
new = LlamaTokenizer.from_pretrained({ext!r})
inv = {{v: k for k, v in new.get_vocab().items()}}
W = {{}}
for name, f in (("model.embed_tokens.weight", "model-00001-of-00002.safetensors"),
                ("lm_head.weight", "model-00002-of-00002.safetensors")):
    with safe_open({src!r} + "/" + f, framework="pt") as h:
        W[name] = h.get_tensor(name).float()
emb, head = W["model.embed_tokens.weight"], W["lm_head.weight"]
a, b = emb.numpy(), head.numpy()
n_old = emb.shape[0]
t = time.time()
for i in range(n_old, n_old + {rows}):
    ids = torch.LongTensor(old([inv[i]])["input_ids"][0])
    a = np.concatenate((a, emb[ids].mean(dim=0).unsqueeze(0).numpy()), axis=0)
    b = np.concatenate((b, head[ids].mean(dim=0).unsqueeze(0).numpy()), axis=0)
print(json.dumps({{"rows": {rows}, "wall_s": time.time() - t}}))
"""


def run_child(code: str, threads: int) -> tuple[dict, float]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               TOKENIZERS_PARALLELISM="false")
    cmd = [sys.executable, "-c", code]
    if shutil.which("taskset") and os.cpu_count() and os.cpu_count() > threads:
        cmd = ["taskset", "-c", ",".join(str(i) for i in range(threads))] + cmd
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    before = ru0.ru_maxrss
    t = time.time()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.time() - t
    if res.returncode != 0:
        raise SystemExit(f"child failed:\n{res.stderr[-4000:]}")
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak_kb = ru1.ru_maxrss
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out["process_wall_s"] = wall
    out["cpu_s"] = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    out["peak_rss_gb"] = peak_kb / 1024 / 1024 if peak_kb > before else None
    return out, wall


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", default=None, help="scratch dir (default: a temp dir, removed at the end)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--method", default="subword_mean")
    ap.add_argument("--layers", type=int, default=1, help="transformer layers (all in the embed_tokens shard)")
    ap.add_argument("--pad-to-multiple-of", type=int, default=None)
    ap.add_argument("--reference-rows", type=int, default=0,
                    help="time the reference per-row algorithm on this many new rows and extrapolate (0: skip)")
    ap.add_argument("--out", default="benchmarks/results/init_embeddings.json")
    args = ap.parse_args(argv)

    work = Path(args.workdir or tempfile.mkdtemp(prefix="cpt-bench-init-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        t = time.time()
        base, ext = build_tokenizers(work)
        src = build_model(work, base, layers=args.layers)
        build_s = time.time() - t
        code = CHILD.format(threads=args.threads, src=str(src), base=str(base), ext=str(ext),
                            out=str(work / "init"), method=args.method, pad=args.pad_to_multiple_of)
        ours, _ = run_child(code, args.threads)
        result = {
            "benchmark": "init_embeddings", "shape": {"old_rows": N_OLD, "new_rows": N_TOTAL - N_OLD,
                                                      "hidden": HIDDEN, "dtype": "bfloat16", "layers": args.layers},
            "method": args.method, "threads": args.threads, "build_s": round(build_s, 1),
            "ours": {"wall_s": round(ours["wall_s"], 2), "process_wall_s": round(ours["process_wall_s"], 2),
                     "cpu_s": round(ours["cpu_s"], 2),
                     "peak_rss_gb": round(ours["peak_rss_gb"], 3) if ours["peak_rss_gb"] else None,
                     "summary": ours["summary"]},
            "targets": {"wall_s": 60, "peak_rss_gb": 4},
            "machine": {"cpus": os.cpu_count(), "loadavg_after": [round(x, 2) for x in os.getloadavg()], "platform": platform.platform(), "python": platform.python_version()},
        }
        if args.reference_rows:
            code = REFERENCE_CHILD.format(threads=args.threads, src=str(src), base=str(base), ext=str(ext),
                                          rows=args.reference_rows)
            ref, _ = run_child(code, args.threads)
            t0 = ref["wall_s"] / ref["rows"] / ((N_OLD + ref["rows"] / 2) / N_OLD)  # per-row cost at the start
            n_new = N_TOTAL - N_OLD
            total = t0 * sum((N_OLD + i) / N_OLD for i in range(n_new))
            result["reference"] = {"rows_timed": ref["rows"], "wall_s_timed": round(ref["wall_s"], 2),
                                   "cpu_s_process": round(ref["cpu_s"], 2),
                                   "ms_per_row_at_start": round(t0 * 1000, 1),
                                   "extrapolated_total_s": round(total, 1)}
            result["speedup"] = round(total / ours["process_wall_s"], 1)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)

    rows = [("ours (cpt.model.init), whole process", f"{result['ours']['process_wall_s']:.1f}",
             f"{result['ours']['cpu_s']:.1f}",
             f"{result['ours']['peak_rss_gb']:.2f}" if result["ours"]["peak_rss_gb"] else "?")]
    if "reference" in result:
        r = result["reference"]
        rows.append((f"reference algorithm (extrapolated from {r['rows_timed']} rows)",
                     f"{r['extrapolated_total_s']:.0f}", "-", "-"))
    print(f"init_embeddings: {N_OLD} -> {N_TOTAL} rows x {HIDDEN}, bf16, {args.layers} layer(s), {args.method}, "
          f"{args.threads} threads")
    print(f"{'':55s} {'wall s':>10s} {'cpu s':>8s} {'peak RSS GB':>12s}")
    for name, w, c, m in rows:
        print(f"{name:55s} {w:>10s} {c:>8s} {m:>12s}")
    if "speedup" in result:
        print(f"speedup: {result['speedup']}x")
    print(f"targets: < 60 s, < 4 GB; load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cpus")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
