"""Compare two results/<experiment>/ trees of the same experiment made by two commits (e.g. before and after a
refactoring): every file both have, byte for byte (sha256), and the training metrics step by step.

    git worktree add ../before <commit>   # then run the workflow in each checkout, e.g. without evaluation:
    .venv/bin/snakemake --cores 2 --omit-from evaluate evaluate_idioms evaluate_generate report
    .venv/bin/python benchmarks/compare_results.py ../before/results/demo results/demo \\
        --out benchmarks/results/compare_demo.json

Files expected to differ are reported apart, not hidden: provenance (commit, times), timings inside JSON reports,
run records. The weights (*.safetensors), tokenizers and dataset shards (*.arrow) must be identical; the exit
code is 1 when any of them differs or a training stage's losses, grad norms or token counts differ.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

SKIP_DIRS = {"tensorboard", "checkpoints", "logs"}  # per-run event files and intermediate checkpoints
ARTIFACT_SUFFIXES = {".safetensors", ".arrow", ".model", ".bin"}  # the bytes that must not change
ARTIFACT_NAMES = {"tokenizer.json", "pieces.jsonl"}


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")
            if p.is_file() and not SKIP_DIRS & set(p.relative_to(root).parts)}


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _steps(path: Path) -> list[tuple]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [(r.get("step"), r.get("loss"), r.get("grad_norm"), r.get("tokens")) for r in rows]


def compare(a: Path, b: Path) -> dict:
    fa, fb = _files(a), _files(b)
    both = sorted(fa & fb)
    differ = [f for f in both if _sha(a / f) != _sha(b / f)]
    artifacts = [f for f in both if Path(f).suffix in ARTIFACT_SUFFIXES or Path(f).name in ARTIFACT_NAMES]
    stages = {}
    for m in sorted(a.glob("train/*/metrics.jsonl")):
        other = b / m.relative_to(a)
        if other.is_file():
            sa, sb = _steps(m), _steps(other)
            stages[m.parent.name] = {"steps": [len(sa), len(sb)], "identical": sa == sb}
    return {"before": str(a), "after": str(b), "files_in_both": len(both), "identical": len(both) - len(differ),
            "differ": differ, "artifacts_compared": len(artifacts),
            "artifacts_differ": [f for f in artifacts if f in differ],
            "only_before": sorted(fa - fb), "only_after": sorted(fb - fa), "training": stages}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--out", type=Path, help="write the comparison as JSON")
    ap.add_argument("--labels", nargs=2, metavar=("BEFORE", "AFTER"),
                    help="names recorded for the two trees instead of their paths (e.g. the commits)")
    args = ap.parse_args(argv)
    res = compare(args.before, args.after)
    if args.labels:
        res["before"], res["after"] = args.labels
    print("| files in both | identical | differ | weights/tokenizers/shards compared | of them differ |")
    print("|---|---|---|---|---|")
    print(f"| {res['files_in_both']} | {res['identical']} | {len(res['differ'])} | {res['artifacts_compared']} "
          f"| {len(res['artifacts_differ'])} |")
    print("\n| stage | steps before / after | losses, grad norms, tokens identical |\n|---|---|---|")
    for stage, s in res["training"].items():
        print(f"| {stage} | {s['steps'][0]} / {s['steps'][1]} | {s['identical']} |")
    print("\nfiles that differ:", *res["differ"], sep="\n  ")
    print("only after:", *res["only_after"], sep="\n  ")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    ok = not res["artifacts_differ"] and all(s["identical"] for s in res["training"].values())
    return 0 if ok and res["artifacts_compared"] else 1


if __name__ == "__main__":
    sys.exit(main())
