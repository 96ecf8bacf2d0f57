"""`cpt export-gguf`: a model directory (a final/, model/init, ...) as a GGUF file llama.cpp and Ollama load, for
both tokenizer families, with llama.cpp's own converter.

The converter (convert_hf_to_gguf.py, its `conversion` package and its own gguf-py) is taken from the pinned
llama-cpp-python sdist (data/sources.yaml, `llama-cpp-python`, vendor/llama.cpp/) and run in a subprocess with this
interpreter; nothing is downloaded.

SentencePiece models (LLaMA-2 and its extensions) convert as they are: the vocabulary, scores and piece types come
from tokenizer.model. Byte-level BPE models (SmolLM2 and its extensions) need `tokenizer.ggml.pre`, the name of the
pre-tokenizer llama.cpp must apply before BPE. The converter finds it by tokenizing a fixed text (with Chinese in it)
and looking the ids' hash up in a table of known models; an extended vocabulary tokenizes that text differently
(the added Chinese pieces merge) although its pre-tokenizer is the base model's, so the lookup fails ("BPE
pre-tokenizer was not recognized"). Here the pre-tokenizer is then declared: `pre_tokenizer_from` = a tokenizer
directory the table does know (the experiment's tokenizer/base) whose tokenizer.json pre-tokenizer and normalizer
are checked to be identical to the model's, or `pre_tokenizer` = a llama.cpp name given by the user.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from cpt.core.errors import ModelError
from cpt.core.sources import archive_path

CONVERTER_SOURCE = "llama-cpp-python"
VENDOR = "vendor/llama.cpp/"
CONVERTER_FILES = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/")
OUTTYPES = ("f32", "f16", "bf16", "q8_0")

# Run inside the converter's directory: wraps the converter's fingerprint lookup so that a failed lookup falls back
# to the declared pre-tokenizer, and records what happened in $CPT_GGUF_REPORT.
WRAPPER = r'''
import json, os, sys
from pathlib import Path
here = Path(__file__).resolve().parent
sys.path.insert(0, str(here))
sys.path.insert(1, str(here / "gguf-py"))
import convert_hf_to_gguf as cv
from conversion import base as cb

owner = next(c for c in (cb.TextModel, cb.ModelBase) if "get_vocab_base_pre" in c.__dict__)
lookup = owner.__dict__["get_vocab_base_pre"]
report = {"fingerprint": None, "pre_tokenizer": None, "declared_from": None}


def get_vocab_base_pre(self, tokenizer):
    try:
        name = lookup(self, tokenizer)
        report.update(fingerprint="recognized", pre_tokenizer=name)
        return name
    except NotImplementedError:
        name, ref = os.environ.get("CPT_GGUF_PRE"), os.environ.get("CPT_GGUF_PRE_FROM")
        if not name and ref:
            from transformers import AutoTokenizer
            name = lookup(self, AutoTokenizer.from_pretrained(ref))
            report["declared_from"] = ref
        if not name:
            raise
        report.update(fingerprint="not recognized: declared", pre_tokenizer=name)
        return name


setattr(owner, "get_vocab_base_pre", get_vocab_base_pre)
try:
    cv.main()
finally:
    Path(os.environ["CPT_GGUF_REPORT"]).write_text(json.dumps(report))
'''


def extract_converter(dest: str | os.PathLike) -> Path:
    """llama.cpp's converter from the pinned sdist into `dest`; returns the path of the wrapper that runs it."""
    dest = Path(dest)
    archive = archive_path(CONVERTER_SOURCE)
    with tarfile.open(archive) as tar:
        root = next((m.name.split(VENDOR)[0] for m in tar.getmembers() if m.name.endswith(VENDOR + CONVERTER_FILES[0])),
                    None)
        if root is None:
            raise ModelError(f"{archive}: no {VENDOR}{CONVERTER_FILES[0]} inside (source {CONVERTER_SOURCE})")
        prefix = root + VENDOR
        for m in tar.getmembers():
            rel = m.name[len(prefix):] if m.name.startswith(prefix) else None
            if rel and m.isfile() and any(rel == f or rel.startswith(f) for f in CONVERTER_FILES if f):
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(tar.extractfile(m).read())
    wrapper = dest / "cpt_convert.py"
    wrapper.write_text(WRAPPER, encoding="utf-8")
    return wrapper


def pre_tokenization(tokenizer_dir: str | os.PathLike) -> dict:
    """What decides how text is split before BPE: tokenizer.json's normalizer and pre_tokenizer."""
    path = Path(tokenizer_dir) / "tokenizer.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: cannot be read ({exc})") from None
    return {"normalizer": data.get("normalizer"), "pre_tokenizer": data.get("pre_tokenizer")}


def export_gguf(model_dir: str | os.PathLike, out: str | os.PathLike, outtype: str | None = None,
                pre_tokenizer: str | None = None, pre_tokenizer_from: str | os.PathLike | None = None,
                timeout: float | None = None) -> dict[str, Any]:
    """Write `out` (a .gguf) from the HF model directory `model_dir`; returns what was written (tokenizer model,
    pre-tokenizer and how it was found, size, sha256). `outtype` None: config export.gguf.outtype's default."""
    from cpt.core.schema import default
    from cpt.tokenizer.family import family_of

    model_dir, out = Path(model_dir), Path(out)
    outtype = outtype or default("export.gguf.outtype")
    if outtype not in OUTTYPES:
        raise ModelError(f"--outtype {outtype!r}: one of {', '.join(OUTTYPES)}")
    if not (model_dir / "config.json").is_file():
        raise ModelError(f"{model_dir}: no config.json; give a model directory (e.g. results/<exp>/train/<stage>/final)")
    family = family_of(model_dir)
    if pre_tokenizer_from is not None and family == "bpe":
        mine, theirs = pre_tokenization(model_dir), pre_tokenization(pre_tokenizer_from)
        if mine != theirs:
            raise ModelError(f"{model_dir}: its pre-tokenizer/normalizer differ from {pre_tokenizer_from}'s, so that "
                             f"tokenizer's llama.cpp pre-tokenizer cannot be declared for it")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cpt-gguf-export-") as tmp:
        wrapper = extract_converter(tmp)
        report_file = Path(tmp) / "report.json"
        env = {**os.environ, "CPT_GGUF_REPORT": str(report_file), "CPT_GGUF_PRE": pre_tokenizer or "",
               "CPT_GGUF_PRE_FROM": str(Path(pre_tokenizer_from).resolve()) if pre_tokenizer_from else ""}
        env.pop("NO_LOCAL_GGUF", None)  # the converter's own gguf-py (its version), not the installed gguf package
        partial = out.with_name(out.name + ".partial")
        cmd = [sys.executable, str(wrapper), str(model_dir), "--outfile", str(partial), "--outtype", outtype]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        report = json.loads(report_file.read_text(encoding="utf-8")) if report_file.is_file() else {}
        if proc.returncode != 0:
            partial.unlink(missing_ok=True)
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            hint = ""
            if "pre-tokenizer was not recognized" in proc.stderr:
                hint = ("\nllama.cpp does not know this vocabulary's fingerprint (an extended vocabulary changes it): "
                        "declare the base model's pre-tokenizer with --pre-tokenizer-from results/<exp>/tokenizer/"
                        "base (or --pre-tokenizer NAME)")
            raise ModelError(f"{model_dir}: llama.cpp's convert_hf_to_gguf.py failed (exit {proc.returncode}):\n"
                             f"{tail}{hint}")
        os.replace(partial, out)
    meta = read_gguf_tokenizer(out)
    digest = hashlib.sha256()
    with open(out, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"gguf": str(out), "bytes": out.stat().st_size, "sha256": digest.hexdigest(), "outtype": outtype,
            "family": family, "tokenizer_model": meta["model"], "pre_tokenizer": meta.get("pre"),
            "fingerprint": report.get("fingerprint"), "declared_from": report.get("declared_from"),
            "tokens": len(meta["tokens"]), "merges": len(meta.get("merges") or []),
            "chat_template": bool(meta.get("chat_template")), "converter": f"{CONVERTER_SOURCE} {VENDOR}"}


def read_gguf_tokenizer(path: str | os.PathLike) -> dict[str, Any]:
    """The tokenizer metadata of a GGUF (gguf package): model, pre, tokens, token types, scores, merges, special
    ids, chat template."""
    from gguf import GGUFReader

    fields = GGUFReader(str(path)).fields

    def value(key):
        f = fields.get(key)
        if f is None:
            return None
        if f.types and f.types[0].name == "ARRAY":
            return [f.contents(i) for i in range(len(f.data))]
        return f.contents()

    out = {k.split(".")[-1]: value(k) for k in (
        "tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens", "tokenizer.ggml.token_type",
        "tokenizer.ggml.scores", "tokenizer.ggml.merges", "tokenizer.ggml.bos_token_id",
        "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id", "tokenizer.chat_template")}
    if out["model"] is None:
        raise ModelError(f"{path}: no tokenizer.ggml.model (not a GGUF with a tokenizer)")
    return out

