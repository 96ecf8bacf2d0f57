"""Step 1.7: the compression table (the seed's: vocab size, tokens per character, average tokens per sample).

For each tokenizer (base, extended) and each language of held-out text: samples, characters, tokens (no BOS/EOS),
compression rate = tokens / characters, average tokens per sample. Ratio = extended tokens / base tokens per language.
Acceptance (config `tokenizer.compression.max_zh_ratio`, default 0.55): extended must use at most that fraction of
the base tokenizer's tokens on held-out Chinese, else TokenizerError (after the files are written).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from cpt.core.errors import TokenizerError


def measure(encode, texts: Sequence[str]) -> dict:
    """encode: list[str] -> list[list[int]]."""
    texts = list(texts)
    tokens = sum(len(x) for x in encode(texts)) if texts else 0
    chars = sum(len(t) for t in texts)
    return {
        "samples": len(texts), "characters": chars, "tokens": tokens,
        "tokens_per_char": round(tokens / chars, 4) if chars else None,
        "avg_tokens_per_sample": round(tokens / len(texts), 3) if texts else None,
    }


def compression_table(tokenizers: Mapping[str, Any], texts: Mapping[str, Sequence[str]]) -> dict:
    """tokenizers: name -> a cpt.tokenizer.family object, or a sentencepiece processor (anything with
    .encode(list, out_type=int) and .get_piece_size()); texts: language -> samples. Returns {"rows": [...], "ratios": {lang: {name: x}}}."""
    from cpt.tokenizer.family import TokenizerFamily

    rows = []
    for name, sp in tokenizers.items():
        if isinstance(sp, TokenizerFamily):
            size, encode = len(sp), (lambda xs, sp=sp: sp.encode(list(xs)))
        else:
            size, encode = sp.get_piece_size(), (lambda xs, sp=sp: sp.encode(list(xs), out_type=int))
        for lang, samples in texts.items():
            rows.append({"tokenizer": name, "language": lang, "vocab_size": size, **measure(encode, samples)})
    ratios: dict[str, dict] = {}
    names = list(tokenizers)
    for lang in texts:
        ref = next(r for r in rows if r["tokenizer"] == names[0] and r["language"] == lang)
        ratios[lang] = {}
        for name in names[1:]:
            row = next(r for r in rows if r["tokenizer"] == name and r["language"] == lang)
            ratios[lang][name] = round(row["tokens"] / ref["tokens"], 4) if ref["tokens"] else None
    return {"baseline": names[0], "rows": rows, "ratios": ratios}


def to_markdown(table: dict) -> str:
    lines = ["| tokenizer | language | vocab size | samples | characters | tokens | tokens/char | "
             "avg tokens/sample |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in table["rows"]:
        lines.append(f"| {r['tokenizer']} | {r['language']} | {r['vocab_size']:,} | {r['samples']:,} | "
                     f"{r['characters']:,} | {r['tokens']:,} | {r['tokens_per_char']} | "
                     f"{r['avg_tokens_per_sample']} |")
    lines.append("")
    for lang, rs in table["ratios"].items():
        for name, x in rs.items():
            lines.append(f"- {lang}: {name} uses {x}x the tokens of {table['baseline']}")
    if "acceptance" in table:
        a = table["acceptance"]
        lines.append(f"- acceptance (zh ratio <= {a['max_zh_ratio']}): {'PASS' if a['passed'] else 'FAIL'}")
    return "\n".join(lines) + "\n"


def compression_report(section: Mapping[str, Any], base_dir: str | os.PathLike, extended_dir: str | os.PathLike,
                       zh_files: Sequence[str | os.PathLike], en_files: Sequence[str | os.PathLike],
                       out_json: str | os.PathLike) -> dict:
    """Write compression.json and compression.md (next to it) + compression.provenance.json.

    `section` is the `tokenizer` section (keys: compression.{max_zh_ratio, max_samples}). zh_files / en_files:
    held-out corpus jsonl (or .txt) files; each record (line) is one sample.
    """
    from cpt.core.provenance import write_provenance
    from cpt.tokenizer.candidates import read_texts
    from cpt.tokenizer.family import model_file
    from cpt.tokenizer.registry import open_tokenizer

    t0 = time.time()
    from cpt.core.schema import complete

    cfg = complete("tokenizer.compression", section.get("compression"))
    limit = int(cfg["max_samples"])
    texts = {}
    for lang, files in (("zh", zh_files), ("en", en_files)):
        if files:
            samples = []
            for t in read_texts(files):
                samples.append(t)
                if len(samples) >= limit:
                    break
            texts[lang] = samples
    if "zh" not in texts or not texts["zh"]:
        raise TokenizerError("compression: no held-out Chinese text given (corpus heldout files of zh categories)")
    sps = {"base": open_tokenizer(base_dir), "extended": open_tokenizer(extended_dir)}
    table = compression_table(sps, texts)
    max_ratio = cfg["max_zh_ratio"]
    zh_ratio = table["ratios"]["zh"]["extended"]
    table["acceptance"] = {"max_zh_ratio": max_ratio, "zh_ratio": zh_ratio,
                           "passed": max_ratio is None or (zh_ratio is not None and zh_ratio <= max_ratio)}
    table["reference_published"] = {"base_tokens_per_char": 1.205, "extended_tokens_per_char": 0.659,
                                    "base_avg_tokens": 134.689, "extended_avg_tokens": 73.682}
    out = Path(out_json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(table, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text(to_markdown(table), encoding="utf-8")
    inputs = {"base": model_file(base_dir), "extended": model_file(extended_dir)}
    inputs.update({f"zh_{i}": f for i, f in enumerate(zh_files)})
    inputs.update({f"en_{i}": f for i, f in enumerate(en_files)})
    write_provenance(out.parent, "tokenizer_compression", dict(section), inputs=inputs, started=t0,
                     filename="compression.provenance.json")
    if not table["acceptance"]["passed"]:
        raise TokenizerError(f"{out}: extended tokenizer uses {zh_ratio}x the base tokens on held-out Chinese, "
                             f"above tokenizer.compression.max_zh_ratio {max_ratio}; add pieces (vocab_size) or "
                             f"better candidates")
    return table
