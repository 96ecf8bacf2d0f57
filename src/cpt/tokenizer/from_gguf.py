"""LLaMA SentencePiece vocabularies from GGUF files, and llama.cpp's reference tokenizations (.inp / .out).

A GGUF vocabulary file (llama.cpp's models/ggml-vocab-*.gguf) stores `tokenizer.ggml.tokens`, `.scores` and
`.token_type` (same type numbering as SentencePiece). For `tokenizer.ggml.model == "llama"` this is exactly the
SentencePiece BPE piece table, so the ModelProto can be rebuilt from it (spm.llama_proto).

Reference files: `<vocab>.gguf.inp` holds the test texts, each followed by the line `__ggml_vocab_test__`
(so texts are separated by "\n__ggml_vocab_test__\n", and the file ends with that separator);
`<vocab>.gguf.out` holds one line per text: the expected token ids (no BOS), space separated.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

from cpt.core.errors import TokenizerError
from cpt.tokenizer.spm import ModelProto, llama_proto

SEPARATOR = "\n__ggml_vocab_test__\n"


@dataclass
class GGUFVocab:
    tokens: list[str]
    scores: list[float]
    types: list[int]
    metadata: dict


def read_gguf_vocab(path_or_bytes: str | os.PathLike | bytes, where: str | None = None) -> GGUFVocab:
    """Tokens, scores, types and scalar tokenizer metadata of a GGUF file (path or bytes)."""
    import gguf

    where = where or ("<bytes>" if isinstance(path_or_bytes, (bytes, bytearray)) else str(path_or_bytes))
    tmp = None
    try:
        if isinstance(path_or_bytes, (bytes, bytearray)):
            tmp = tempfile.NamedTemporaryFile(suffix=".gguf", delete=False)
            tmp.write(path_or_bytes)
            tmp.close()
            path = tmp.name
        else:
            path = str(path_or_bytes)
        try:
            reader = gguf.GGUFReader(path)
        except Exception as exc:
            raise TokenizerError(f"{where}: cannot read GGUF ({exc})") from None
        fields = reader.fields

        def array(key):
            if key not in fields:
                raise TokenizerError(f"{where}: GGUF has no {key}; not a tokenizer vocabulary")
            return list(fields[key].contents())

        tokens = array("tokenizer.ggml.tokens")
        scores = [float(s) for s in array("tokenizer.ggml.scores")]
        types = [int(t) for t in array("tokenizer.ggml.token_type")]
        meta = {}
        for key, field in fields.items():
            if key.startswith(("tokenizer.ggml.", "general.")) and len(field.data) == 1:
                try:
                    meta[key] = field.contents()
                except Exception:  # pragma: no cover - exotic scalar types
                    continue
        return GGUFVocab(tokens, scores, types, meta)
    finally:
        if tmp is not None:
            os.unlink(tmp.name)


def proto_from_gguf(path_or_bytes: str | os.PathLike | bytes, where: str | None = None) -> ModelProto:
    """Rebuild a LLaMA SentencePiece ModelProto from a GGUF vocabulary with tokenizer model "llama"."""
    vocab = read_gguf_vocab(path_or_bytes, where)
    where = where or str(path_or_bytes if not isinstance(path_or_bytes, (bytes, bytearray)) else "<bytes>")
    model = vocab.metadata.get("tokenizer.ggml.model")
    if model != "llama":
        raise TokenizerError(f"{where}: tokenizer.ggml.model is {model!r}; only SentencePiece ('llama') "
                             f"vocabularies convert to a LLaMA tokenizer.model")
    for key, want in (("tokenizer.ggml.unknown_token_id", 0), ("tokenizer.ggml.bos_token_id", 1),
                      ("tokenizer.ggml.eos_token_id", 2)):
        if key in vocab.metadata and int(vocab.metadata[key]) != want:
            raise TokenizerError(f"{where}: {key} = {vocab.metadata[key]}, LLaMA layout needs {want}")
    return llama_proto(vocab.tokens, vocab.scores, vocab.types)


def parse_reference(inp: bytes | str, out: bytes | str, where: str = "reference") -> list[tuple[str, list[int]]]:
    """llama.cpp's .inp/.out pair -> [(text, expected ids)]."""
    inp = inp.decode("utf-8") if isinstance(inp, bytes) else inp
    out = out.decode("utf-8") if isinstance(out, bytes) else out
    texts = inp.split(SEPARATOR)
    if texts and texts[-1] == "":
        texts.pop()
    lines = out.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(texts) != len(lines):
        raise TokenizerError(f"{where}: {len(texts)} texts in .inp but {len(lines)} lines in .out")
    cases = []
    for i, (text, line) in enumerate(zip(texts, lines), 1):
        try:
            ids = [int(x) for x in line.split()]
        except ValueError:
            raise TokenizerError(f"{where}.out:{i}: not a list of token ids: {line[:60]!r}") from None
        cases.append((text, ids))
    return cases


# ------------------------------------------------------------------------------------------------ byte-level BPE
# tokenizer.ggml.pre -> the pre-tokenizer of Hugging Face's tokenizer.json (the regexes llama.cpp names by them)
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
PRE_TOKENIZERS = {
    "gpt2": _BYTE_LEVEL,
    "default": _BYTE_LEVEL,
    "smollm": {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True}, _BYTE_LEVEL]},
    "llama-bpe": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": _LLAMA3_SPLIT}, "behavior": "Isolated", "invert": False},
        {**_BYTE_LEVEL, "use_regex": False}]},
}


def bpe_tokenizer_from_gguf(path: str | os.PathLike, where: str | None = None) -> tuple[dict, dict]:
    """(tokenizer.json, tokenizer_config.json) contents of the byte-level BPE vocabulary of a GGUF file
    (tokenizer.ggml.model == "gpt2": tokens, merges, token types; control tokens become special added tokens)."""
    import gguf

    where = where or str(path)
    try:
        fields = gguf.GGUFReader(str(path)).fields
    except Exception as exc:
        raise TokenizerError(f"{where}: cannot read GGUF ({exc})") from None

    def get(key, default=None):
        if key not in fields:
            if default is not None:
                return default
            raise TokenizerError(f"{where}: GGUF has no {key}; not a byte-level BPE vocabulary")
        f = fields[key]
        return f.contents()

    model = get("tokenizer.ggml.model")
    if model != "gpt2":
        raise TokenizerError(f"{where}: tokenizer.ggml.model is {model!r}; only byte-level BPE ('gpt2') vocabularies "
                             f"convert to a tokenizer.json")
    pre = get("tokenizer.ggml.pre", "default")
    if pre not in PRE_TOKENIZERS:
        raise TokenizerError(f"{where}: tokenizer.ggml.pre {pre!r} is not one of {', '.join(PRE_TOKENIZERS)}")
    tokens, types = list(get("tokenizer.ggml.tokens")), [int(t) for t in get("tokenizer.ggml.token_type")]
    merges = [m.split(" ", 1) for m in get("tokenizer.ggml.merges")]
    added = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
              "special": True} for i, (t, ty) in enumerate(zip(tokens, types)) if ty == 3]  # CONTROL
    data = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
            "pre_tokenizer": PRE_TOKENIZERS[pre],
            "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                               "use_regex": True},
            "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                      "ignore_merges": pre == "llama-bpe",
                      "vocab": {t: i for i, t in enumerate(tokens)}, "merges": merges}}
    config = {}
    for key, name in (("bos_token", "bos_token_id"), ("eos_token", "eos_token_id"), ("unk_token", "unknown_token_id"),
                      ("pad_token", "padding_token_id")):
        if f"tokenizer.ggml.{name}" in fields:
            config[key] = tokens[int(get(f"tokenizer.ggml.{name}"))]
    if "tokenizer.chat_template" in fields:
        config["chat_template"] = get("tokenizer.chat_template")
    return data, config
