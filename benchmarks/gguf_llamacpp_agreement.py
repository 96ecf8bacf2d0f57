"""Agreement of `cpt export-gguf` with llama.cpp itself: the GGUF of an HF model directory, loaded by llama.cpp built
from the pinned llama-cpp-python sdist (data/sources.yaml `llama-cpp-python`, vendor/llama.cpp), must give
  - the same token ids as the HF tokenizer (transformers) on held-out Chinese and English text, and
  - the same greedy top-1 tokens as transformers on fixed zh/en prompts (each step's argmax, with both sides'
    top-1 - top-2 logit margins and the logit differences, so a near-tie is visible as one).

    PYTHONPATH=src .venv/bin/python benchmarks/gguf_llamacpp_agreement.py \\
        --model results/smollm2-zh/train/sft/final --pre-tokenizer-from results/smollm2-zh/tokenizer/base \\
        --heldout results/smollm2-zh/corpus/heldout --out benchmarks/results/gguf_llamacpp_agreement.json

The smollm2-zh run's SFT export is the case issue 26 names (extended byte-level BPE: llama.cpp's fingerprint of the
vocabulary is unknown and the base pre-tokenizer is declared). For the LLaMA-2 SentencePiece family give a model of a
LLaMA-2 run and leave --pre-tokenizer-from out.

llama.cpp's side is benchmarks/gguf_llamacpp_probe.cpp, a small program on libllama's C API (tokenize; greedy steps
with the top logits), compiled against libllama built here with cmake (CPU, target `llama` only, -O1 to keep the
build short: about 8 min with -j 2 on 2 loaded cores); the build and the f32 GGUF stay in --build-dir. Writes --out and
exits 1 when anything disagrees.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
from pathlib import Path

PROMPTS = ["中国的首都是", "今天天气很好，我们", "床前明月光，", "The capital of France is", "Once upon a time, there",
           "1, 2, 3, 4,"]
PROBE = Path(__file__).with_name("gguf_llamacpp_probe.cpp")
CMAKE_OPTIONS = ["-DCMAKE_BUILD_TYPE=Release", "-DCMAKE_C_FLAGS_RELEASE=-O1 -DNDEBUG",
                 "-DCMAKE_CXX_FLAGS_RELEASE=-O1 -DNDEBUG", "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF",
                 "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_SERVER=OFF", "-DLLAMA_BUILD_TOOLS=OFF",
                 "-DLLAMA_BUILD_EXAMPLES=OFF", "-DGGML_NATIVE=OFF", "-DGGML_OPENMP=OFF"]


def build_probe(build_dir: Path, jobs: int) -> Path:
    """libllama from the pinned sdist (CPU) and the probe linked to it; returns the probe's path."""
    from cpt.core.sources import archive_path

    src, build = build_dir / "llama.cpp", build_dir / "build"
    probe = build / "bin" / "cpt-gguf-probe"
    if probe.is_file() and probe.stat().st_mtime >= PROBE.stat().st_mtime:
        return probe
    if not (src / "CMakeLists.txt").is_file():
        with tarfile.open(archive_path("llama-cpp-python")) as tar:
            for m in tar.getmembers():
                if "/vendor/llama.cpp/" in m.name and m.isfile():
                    target = src / m.name.split("/vendor/llama.cpp/", 1)[1]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(tar.extractfile(m).read())
                    target.chmod(m.mode & 0o777)
    subprocess.run(["cmake", "-S", str(src), "-B", str(build), *CMAKE_OPTIONS], check=True)
    subprocess.run(["cmake", "--build", str(build), "--target", "llama", "-j", str(jobs)], check=True)
    libs = sorted({p.parent for p in build.rglob("libllama.*")} | {p.parent for p in build.rglob("libggml*.*")})
    subprocess.run(["c++", "-std=c++17", "-O2", str(PROBE), "-o", str(probe), "-I", str(src / "include"),
                    "-I", str(src / "ggml" / "include"), *[f"-L{d}" for d in libs],
                    *[f"-Wl,-rpath,{d}" for d in libs], "-lllama", "-lggml", "-lggml-base"], check=True)
    return probe


def heldout_texts(heldout: Path | None, per_language: int) -> dict[str, list[str]]:
    """Texts of the experiment's held-out split (corpus/heldout/<category>.jsonl): each record's first 1,000
    characters as they are (newlines included), then each of its paragraphs (at most 400 characters), per language
    by script (any CJK character: zh); without --heldout a few fixed sentences."""
    from cpt.artifacts.corpus import record_text

    out: dict[str, list[str]] = {"zh": [], "en": []}
    if heldout is None:
        out["zh"] = ["我想在apple工作1314151天～", "自然语言处理是人工智能的一个重要方向。", "床前明月光，疑是地上霜。"]
        out["en"] = ["I've been 'told he's there, 'RE you sure?", "The quick brown fox jumps over the lazy dog."]
        return out
    for f in sorted(heldout.glob("*.jsonl")):
        for line in f.read_text(encoding="utf-8").splitlines():
            text = record_text(json.loads(line), "\n").strip() if line.strip() else ""
            for piece in [text[:1000]] + [p.strip()[:400] for p in text.split("\n") if p.strip()]:
                lang = "zh" if any("\u4e00" <= ch <= "\u9fff" for ch in piece) else "en"
                if piece and len(out[lang]) < per_language:
                    out[lang].append(piece)
    return out


def probe_run(probe: Path, args: list[str], texts: list[str], tmp: Path, *more: str) -> list:
    """The probe on `texts` (one file, NUL-separated); one JSON value per text."""
    f = tmp / "probe-input.txt"
    f.write_bytes(b"\0".join(t.encode("utf-8") for t in texts))
    run = subprocess.run([str(probe), *args, str(f), *more], capture_output=True, text=True, check=True)
    rows = [json.loads(line) for line in run.stdout.splitlines() if line.strip()]
    if len(rows) != len(texts):
        raise RuntimeError(f"probe {args[0]}: {len(rows)} results for {len(texts)} texts\n{run.stderr[-2000:]}")
    return rows


def hf_greedy(model, ids: list[int], steps: int) -> tuple[list, list[int]]:
    """transformers' greedy steps (no stop at EOS, like the probe): each step's logits (a tensor) and the sequence."""
    import torch

    out, seq = [], list(ids)
    for _ in range(steps):
        with torch.no_grad():
            logits = model(torch.tensor([seq])).logits[0, -1].float()
        out.append(logits)
        seq.append(int(logits.argmax()))
    return out, seq


def compare_greedy(prompt: str, hf_ids: list[int], hf_logits: list, ll: dict) -> dict:
    """Step by step while both sides chose the same tokens: argmax ids, top-1 - top-2 margins, |logit differences|
    at llama.cpp's top 5 ids."""
    row = {"prompt": prompt, "prompt_ids_equal": hf_ids == ll["ids"], "steps": []}
    for logits, c in zip(hf_logits, ll["steps"]):
        (v1, v2), (i1, _) = logits.topk(2)
        row["steps"].append({"transformers": int(i1), "llama.cpp": c[0][0], "margin_transformers": float(v1 - v2),
                             "margin_llama.cpp": c[0][1] - c[1][1],
                             "max_abs_logit_diff_top5": max(abs(float(logits[i]) - v) for i, v in c)})
        if int(i1) != c[0][0]:
            break
    row["agree"] = row["prompt_ids_equal"] and len(row["steps"]) == len(hf_logits) and all(
        s["transformers"] == s["llama.cpp"] for s in row["steps"])
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, type=Path)
    ap.add_argument("--pre-tokenizer-from", type=Path)
    ap.add_argument("--heldout", type=Path)
    ap.add_argument("--per-language", type=int, default=200)
    ap.add_argument("--greedy-tokens", type=int, default=8)
    ap.add_argument("--build-dir", type=Path, default=Path(".cache/llama.cpp"))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/gguf_llamacpp_agreement.json"))
    args = ap.parse_args(argv)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from cpt.model.gguf_export import export_gguf

    probe = build_probe(args.build_dir, args.jobs)
    work = args.build_dir / "exports"
    work.mkdir(parents=True, exist_ok=True)
    gguf = work / f"{args.model.resolve().parent.name}-{args.model.name}-f32.gguf"
    export = export_gguf(args.model, gguf, "f32", pre_tokenizer_from=args.pre_tokenizer_from)
    tok = AutoTokenizer.from_pretrained(str(args.model))
    export = {k: v for k, v in export.items() if k != "gguf"}  # paths as given, not this machine's
    export["declared_from"] = export["declared_from"] and str(args.pre_tokenizer_from)
    result: dict = {"model": str(args.model), "export": export,
                    "llama_cpp": "llama-cpp-python sdist vendor/llama.cpp (data/sources.yaml), CPU, "
                                 "benchmarks/gguf_llamacpp_probe.cpp", "tokenization": {}, "greedy": [],
                    "greedy_llama_cpp_defaults": []}
    for lang, texts in heldout_texts(args.heldout, args.per_language).items():
        got = probe_run(probe, ["tokenize", str(gguf)], texts, work) if texts else []
        bad = []
        for text, ll in zip(texts, got):
            want = tok.encode(text, add_special_tokens=False)
            if ll != want:
                bad.append({"text": text, "transformers": want, "llama.cpp": ll})
        result["tokenization"][lang] = {"texts": len(texts), "tokens": sum(len(x) for x in got),
                                        "identical": len(texts) - len(bad), "first_differences": bad[:5]}
    model = AutoModelForCausalLM.from_pretrained(str(args.model), torch_dtype=torch.float32).eval()
    hf = {p: hf_greedy(model, tok.encode(p, add_special_tokens=True), args.greedy_tokens) for p in PROMPTS}
    for mode in ("f32", "default"):  # f32 KV, no flash attention: the conversion alone; llama.cpp's defaults
        rows = probe_run(probe, ["greedy", str(gguf), str(args.greedy_tokens)], PROMPTS, work, mode)
        for prompt, ll in zip(PROMPTS, rows):
            ids = tok.encode(prompt, add_special_tokens=True)
            logits, seq = hf[prompt]
            row = compare_greedy(prompt, ids, logits, ll)
            row["text_transformers"] = tok.decode(seq[len(ids):])
            row["text_llama.cpp"] = tok.decode([s[0][0] for s in ll["steps"]])
            result["greedy" if mode == "f32" else "greedy_llama_cpp_defaults"].append(row)
    tok_ok = all(v["identical"] == v["texts"] for v in result["tokenization"].values())
    result["summary"] = {
        "tokenization_identical": tok_ok,
        "greedy_prompts_agree": sum(g["agree"] for g in result["greedy"]), "greedy_prompts": len(PROMPTS),
        "greedy_tokens": args.greedy_tokens,
        "min_margin_transformers": min(s["margin_transformers"] for g in result["greedy"] for s in g["steps"]),
        "max_abs_logit_diff_top5": max(s["max_abs_logit_diff_top5"] for g in result["greedy"] for s in g["steps"]),
        "defaults_prompts_agree": sum(g["agree"] for g in result["greedy_llama_cpp_defaults"]),
        "defaults_max_abs_logit_diff_top5": max(s["max_abs_logit_diff_top5"]
                                                for g in result["greedy_llama_cpp_defaults"] for s in g["steps"]),
    }
    result["agree"] = tok_ok and all(g["agree"] for g in result["greedy"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps({"tokenization": {k: {x: v[x] for x in ("texts", "tokens", "identical")}
                                       for k, v in result["tokenization"].items()},
                      "summary": result["summary"], "agree": result["agree"]}, indent=2, ensure_ascii=False))
    return 0 if result["agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
