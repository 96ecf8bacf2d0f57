"""Agreement of `cpt export-gguf` with llama.cpp itself: the GGUF of an HF model directory, loaded by llama.cpp built
from the pinned llama-cpp-python sdist (data/sources.yaml `llama-cpp-python`, vendor/llama.cpp), must give
  - the same token ids as the HF tokenizer (transformers) on held-out Chinese and English text, and
  - the same greedy continuation (first tokens, as text) as transformers on fixed zh/en prompts.

    PYTHONPATH=src .venv/bin/python benchmarks/gguf_llamacpp_agreement.py \\
        --model results/smollm2-zh/train/sft/final --pre-tokenizer-from results/smollm2-zh/tokenizer/base \\
        --heldout results/smollm2-zh/corpus/heldout --out benchmarks/results/gguf_llamacpp_agreement

The smollm2-zh run's SFT export is the case issue 26 names (extended byte-level BPE: llama.cpp's fingerprint of the
vocabulary is unknown and the base pre-tokenizer is declared). For the LLaMA-2 SentencePiece family give a model of a
LLaMA-2 run and leave --pre-tokenizer-from out. Building llama.cpp (CPU, cmake + a C++ compiler; the tools
llama-tokenize and llama-simple only) takes several minutes on 2 cores; the build is kept in --build-dir.
Writes <out>/agreement.json and exits 1 when anything disagrees.
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


def build_llama_cpp(build_dir: Path, jobs: int) -> Path:
    """llama.cpp's tools from the pinned sdist (CPU build); returns the directory of the binaries."""
    from cpt.core.sources import archive_path

    src = build_dir / "llama.cpp"
    bins = build_dir / "build" / "bin"
    if (bins / "llama-tokenize").is_file() and (bins / "llama-simple").is_file():
        return bins
    if not (src / "CMakeLists.txt").is_file():
        with tarfile.open(archive_path("llama-cpp-python")) as tar:
            for m in tar.getmembers():
                if "/vendor/llama.cpp/" in m.name and m.isfile():
                    target = src / m.name.split("/vendor/llama.cpp/", 1)[1]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(tar.extractfile(m).read())
                    target.chmod(m.mode & 0o777)
    subprocess.run(["cmake", "-S", str(src), "-B", str(build_dir / "build"), "-DCMAKE_BUILD_TYPE=Release",
                    "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_SERVER=OFF", "-DGGML_NATIVE=OFF"],
                   check=True)
    subprocess.run(["cmake", "--build", str(build_dir / "build"), "--target", "llama-tokenize", "llama-simple",
                    "-j", str(jobs)], check=True)
    return bins


def heldout_texts(heldout: Path | None, per_language: int) -> dict[str, list[str]]:
    """Lines of the experiment's held-out split (corpus/heldout/<category>.jsonl, field text), per language by
    script (any CJK character: zh); without --heldout a few fixed sentences."""
    out: dict[str, list[str]] = {"zh": [], "en": []}
    if heldout is None:
        out["zh"] = ["我想在apple工作1314151天～", "自然语言处理是人工智能的一个重要方向。", "床前明月光，疑是地上霜。"]
        out["en"] = ["I've been 'told he's there, 'RE you sure?", "The quick brown fox jumps over the lazy dog."]
        return out
    for f in sorted(heldout.glob("*.jsonl")):
        for line in f.read_text(encoding="utf-8").splitlines():
            text = (json.loads(line).get("text") or "").strip() if line.strip() else ""
            for para in (p.strip() for p in text.split("\n") if p.strip()):
                lang = "zh" if any("\u4e00" <= ch <= "\u9fff" for ch in para) else "en"
                if len(out[lang]) < per_language:
                    out[lang].append(para[:400])
    return out


def llama_ids(bins: Path, gguf: Path, text: str, tmp: Path) -> list[int]:
    prompt = tmp / "prompt.txt"
    prompt.write_text(text, encoding="utf-8")
    run = subprocess.run([str(bins / "llama-tokenize"), "-m", str(gguf), "-f", str(prompt), "--ids", "--no-bos",
                          "--log-disable"], capture_output=True, text=True, check=True)
    line = [x for x in run.stdout.splitlines() if x.startswith("[")][-1]
    return json.loads(line)


def llama_greedy(bins: Path, gguf: Path, prompt: str, n: int) -> str:
    run = subprocess.run([str(bins / "llama-simple"), "-m", str(gguf), "-n", str(n), prompt], capture_output=True,
                         text=True, check=True)
    return run.stdout


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, type=Path)
    ap.add_argument("--pre-tokenizer-from", type=Path)
    ap.add_argument("--heldout", type=Path)
    ap.add_argument("--per-language", type=int, default=200)
    ap.add_argument("--greedy-tokens", type=int, default=4)
    ap.add_argument("--build-dir", type=Path, default=Path(".cache/llama.cpp"))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/gguf_llamacpp_agreement"))
    args = ap.parse_args(argv)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from cpt.model.gguf_export import export_gguf

    args.out.mkdir(parents=True, exist_ok=True)
    bins = build_llama_cpp(args.build_dir, args.jobs)
    gguf = args.out / "model-f32.gguf"
    export = export_gguf(args.model, gguf, "f32", pre_tokenizer_from=args.pre_tokenizer_from)
    tok = AutoTokenizer.from_pretrained(str(args.model))
    result: dict = {"model": str(args.model), "export": export, "tokenization": {}, "greedy": []}
    for lang, texts in heldout_texts(args.heldout, args.per_language).items():
        bad = []
        for text in texts:
            want = tok.encode(text, add_special_tokens=False)
            got = llama_ids(bins, gguf, text, args.out)
            if got != want:
                bad.append({"text": text, "transformers": want, "llama.cpp": got})
        result["tokenization"][lang] = {"texts": len(texts), "identical": len(texts) - len(bad), "first": bad[:5]}
    model = AutoModelForCausalLM.from_pretrained(str(args.model), torch_dtype=torch.float32).eval()
    for prompt in PROMPTS:
        ids = tok.encode(prompt, add_special_tokens=True)
        with torch.no_grad():
            gen = model.generate(torch.tensor([ids]), max_new_tokens=args.greedy_tokens, do_sample=False)
        hf_text = tok.decode(gen[0, len(ids):], skip_special_tokens=False)
        ll = llama_greedy(bins, gguf, prompt, args.greedy_tokens)
        result["greedy"].append({"prompt": prompt, "transformers": hf_text, "llama.cpp": ll,
                                 "agree": ll.rstrip().endswith(hf_text.rstrip())})
    ok = all(v["identical"] == v["texts"] for v in result["tokenization"].values()) and all(
        g["agree"] for g in result["greedy"])
    result["agree"] = ok
    (args.out / "agreement.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps({k: result[k] for k in ("tokenization", "agree")}, indent=2, ensure_ascii=False))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
