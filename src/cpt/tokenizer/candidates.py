"""Step 1.5, the candidates of new pieces: their sources, the filters, the pieces file format (cpt.tokenizer.pieces
selects from them).

Candidates come from sources listed in order of priority (config `tokenizer.candidates.sources`):
  train     a SentencePiece BPE model trained on the TRAIN split of the Chinese categories (identity normalisation,
            byte fallback, seeded); ranked by the trained model's score (= its merge order; single characters,
            which the trainer appends after all merges, come last)
  train_bpe a BPE trained with the `tokenizers` trainer on the same split (characters, split at whitespace and
            punctuation); ranked by merge order, then single characters
  jieba     a `word freq pos` word list (jieba/dict.txt), ranked by frequency
  gguf      the NORMAL pieces of a GGUF SentencePiece vocabulary (e.g. Baichuan's), ranked by score
  jsonl     a user list of {"piece": ...} lines, in file order
Every candidate is normalised (leading "▁" stripped unless `strip_prefix: false`) and filtered: charset rule
(default `han`: every character a Han ideograph), length, no whitespace/control characters, not a byte/special
piece, not already in the base vocabulary (exact match after normalisation), not a duplicate of a higher-ranked
candidate. Rejections are counted per source and reason. The ranked survivors are concatenated in source order;
the first `vocab_size - base size` become pieces.jsonl, the rest stay in candidates.jsonl as the reserve the
expansion step draws replacements from.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import os
import re
import time
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from cpt.artifacts.records import iter_json_objects
from cpt.core.errors import ConfigError, RecordError, TokenizerError
from cpt.core.schema import complete
from cpt.core.sources import read_member
from cpt.tokenizer.spm import SPIECE, load_proto

log = logging.getLogger(__name__)

# Han ideographs: CJK Unified Ideographs + extensions A-H, compatibility ideographs, radicals, 〇
_HAN = (
    "\u2e80-\u2eff\u2f00-\u2fdf\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
    "\U00020000-\U0002a6df\U0002a700-\U0002ebef\U0002f800-\U0002fa1f\U00030000-\U000323af"
)
# CJK punctuation, full-width forms, general punctuation used in Chinese text (quotes, dashes, ellipsis)
_CJK_PUNCT = "\u3000-\u303f\uff00-\uffef\u2010-\u2027\u2030-\u205e\u00b7"
CHARSETS = {
    "han": re.compile(f"[{_HAN}]+"),
    "cjk": re.compile(f"[{_HAN}{_CJK_PUNCT}]+"),
    "any": re.compile(r"[^\s\x00-\x1f\x7f]+"),
}


@dataclass
class Candidate:
    piece: str
    source: str
    score: float


@dataclass
class SourceStats:
    read: int = 0
    kept: int = 0
    rejected: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        return {"read": self.read, "kept": self.kept, "rejected": dict(sorted(self.rejected.items()))}


# ------------------------------------------------------------------------------------------------ text input
def read_texts(paths: Sequence[str | os.PathLike]) -> Iterator[str]:
    """Texts of corpus jsonl files ({"source","target",...}: source + target) or plain .txt files (one per line)."""
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise TokenizerError(f"{path}: training text file does not exist")
        if path.suffix == ".jsonl":
            for n, rec in iter_json_objects(path):
                if not isinstance(rec.get("target"), str):
                    raise RecordError(path, n, "bad_record", "expected {\"source\": str, \"target\": str, ...}")
                yield (rec.get("source") or "") + rec["target"]
        else:
            with open(path, encoding="utf-8") as f:
                for line in f:
                    line = line.rstrip("\n")
                    if line.strip():
                        yield line


_SENTENCE_END = re.compile(r"(?<=[。！？；!?;])")


def trainer_sentences(texts: Iterable[str], max_bytes: int = 4000) -> Iterator[str]:
    """Lines of the texts, long lines cut at sentence ends (then hard) so none exceeds the trainer's limit."""
    for text in texts:
        for line in text.split("\n"):
            line = line.strip()
            if not line:
                continue
            if len(line.encode("utf-8")) <= max_bytes:
                yield line
                continue
            buf = ""
            for part in _SENTENCE_END.split(line):
                while len(part.encode("utf-8")) > max_bytes:  # no sentence end: hard cut
                    cut = max_bytes // 4
                    if buf:
                        yield buf
                        buf = ""
                    yield part[:cut]
                    part = part[cut:]
                if len((buf + part).encode("utf-8")) > max_bytes:
                    yield buf
                    buf = part
                else:
                    buf += part
            if buf:
                yield buf


def train_candidate_model(texts: Iterable[str], vocab_size: int, *, seed: int, character_coverage: float,
                          max_piece_length: int, num_threads: int, input_sentence_size: int) -> bytes:
    """Train a SentencePiece BPE model (identity normalisation, byte fallback) and return its serialized bytes.
    The settings are a `train` candidate source's (their defaults: the schema, `complete_source`)."""
    import sentencepiece as spm

    sentences = list(trainer_sentences(texts))
    if not sentences:
        raise TokenizerError("candidate training: no text (check the zh TRAIN split files)")
    spm.set_random_generator_seed(int(seed))
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences), model_writer=model, model_type="bpe", vocab_size=int(vocab_size),
            normalization_rule_name="identity", byte_fallback=True, character_coverage=character_coverage,
            split_digits=True, max_sentencepiece_length=int(max_piece_length), remove_extra_whitespaces=False,
            num_threads=int(num_threads), input_sentence_size=int(input_sentence_size),
            shuffle_input_sentence=True, hard_vocab_limit=False, minloglevel=2, max_sentence_length=4192,
            unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        )
    except RuntimeError as exc:
        raise TokenizerError(f"candidate training failed: {exc}") from None
    return model.getvalue()


def train_bpe_candidates(texts: Iterable[str], vocab_size: int, max_piece_length: int,
                         source: str) -> list[Candidate]:
    """Chinese pieces from a BPE trained with the `tokenizers` trainer (characters, not bytes; text split at
    whitespace and punctuation first), ranked by merge order, then the single characters by frequency. The
    trainer's vocab_size counts its alphabet (every character seen), so it must exceed that to learn merges."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    sentences = list(trainer_sentences(texts))
    if not sentences:
        raise TokenizerError("candidate training: no text (check the zh TRAIN split files)")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(),
                                                 pre_tokenizers.Digits(individual_digits=True)])
    trainer = trainers.BpeTrainer(vocab_size=int(vocab_size), show_progress=False,
                                  max_token_length=int(max_piece_length))
    tok.train_from_iterator(sentences, trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    merged = [a + b for a, b in (m.split(" ", 1) if isinstance(m, str) else m for m in model["merges"])]
    n = len(merged)
    freq = Counter(ch for line in sentences for ch in line)
    chars = sorted((t for t in model["vocab"] if len(t) == 1), key=lambda t: (-freq[t], t))
    return [Candidate(p, source, float(n - i)) for i, p in enumerate(merged)] + \
        [Candidate(c, source, 0.0) for c in chars]


# ------------------------------------------------------------------------------------------------ sources
def candidates_from_model(model: bytes | str | os.PathLike, source: str = "train") -> Iterator[Candidate]:
    proto = load_proto(model)
    pieces = [p for p in proto.pieces if p.type == 1]  # NORMAL
    # stable sort by score: the trainer's own order (merges by merge order, then characters)
    for p in sorted(pieces, key=lambda p: -p.score):
        yield Candidate(p.piece, source, float(p.score))


def candidates_from_jieba(data: bytes | str, source: str, min_freq: int) -> Iterator[Candidate]:
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        freq = 0
        if len(parts) > 1:
            try:
                freq = int(parts[1])
            except ValueError:
                raise TokenizerError(f"{source}:{n}: expected `word freq [pos]`, got {line[:60]!r}") from None
        if freq >= min_freq:
            rows.append((parts[0], freq, n))
    rows.sort(key=lambda r: (-r[1], r[2]))
    for word, freq, _ in rows:
        yield Candidate(word, source, float(freq))


def candidates_from_gguf(data: bytes | str | os.PathLike, source: str = "gguf") -> Iterator[Candidate]:
    from cpt.tokenizer.from_gguf import read_gguf_vocab

    vocab = read_gguf_vocab(data, where=source)
    rows = [(t, s, i) for i, (t, s, ty) in enumerate(zip(vocab.tokens, vocab.scores, vocab.types)) if ty == 1]
    rows.sort(key=lambda r: (-r[1], r[2]))
    for tok, score, _ in rows:
        yield Candidate(tok, source, float(score))


def read_pieces_jsonl(path: str | os.PathLike) -> list[str]:
    """The reference format: one {"piece": str} per line."""
    path = Path(path)
    if not path.is_file():
        raise TokenizerError(f"{path}: pieces file does not exist")
    out = []
    for n, rec in iter_json_objects(path):
        if not isinstance(rec.get("piece"), str) or not rec["piece"]:
            raise RecordError(path, n, "bad_piece", 'expected {"piece": "<non-empty string>"}')
        out.append(rec["piece"])
    return out


def write_pieces_jsonl(pieces: Iterable[str], path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for p in pieces:
            f.write(json.dumps({"piece": p}, ensure_ascii=False) + "\n")
    return path


# ------------------------------------------------------------------------------------------------ filter
def charset_pattern(rule: str) -> re.Pattern:
    if rule in CHARSETS:
        return CHARSETS[rule]
    if rule.startswith("regex:"):
        try:
            return re.compile(rule[len("regex:"):])
        except re.error as exc:
            raise ConfigError(f"tokenizer.candidates.charset: bad regex ({exc})") from None
    raise ConfigError(f"tokenizer.candidates.charset: {rule!r} is not one of {', '.join(CHARSETS)} or regex:<pattern>")


class CandidateFilter:
    """Normalise and filter candidates; remembers what it accepted (no duplicates) and counts rejections."""

    def __init__(self, base_pieces: Iterable[str], *, charset: str, strip_prefix: bool, max_chars: int,
                 min_chars: int):
        self.base = set(base_pieces)
        self.pattern = charset_pattern(charset)
        self.strip_prefix = strip_prefix
        self.max_chars = max_chars
        self.min_chars = min_chars
        self.accepted: set[str] = set()

    @classmethod
    def from_config(cls, base_pieces: Iterable[str], candidates: Mapping[str, Any] | None,
                    charset: str | None = None) -> "CandidateFilter":
        """The filter of a `tokenizer.candidates` section (its defaults filled in); `charset` overrides its own."""
        cfg = complete("tokenizer.candidates", candidates)
        return cls(base_pieces, charset=charset or cfg["charset"], strip_prefix=cfg["strip_prefix"],
                   max_chars=cfg["max_piece_chars"], min_chars=cfg["min_piece_chars"])

    def normalise(self, piece: str) -> str:
        if self.strip_prefix and piece.startswith(SPIECE):
            piece = piece.lstrip(SPIECE)
        return piece

    def check(self, piece: str) -> tuple[str, str | None]:
        """(normalised piece, rejection reason or None)."""
        p = self.normalise(piece)
        body = p[1:] if p.startswith(SPIECE) else p
        if not body:
            return p, "empty"
        if SPIECE in body or any(ch.isspace() or unicodedata.category(ch) in ("Cc", "Cs", "Co", "Cn")
                                 for ch in body):
            return p, "whitespace_or_control"
        if re.fullmatch(r"<0x[0-9A-Fa-f]{2}>|<unk>|<s>|</s>", p):
            return p, "special_or_byte"
        if not self.pattern.fullmatch(body):
            return p, "charset"
        if len(body) > self.max_chars:
            return p, "too_long"
        if len(body) < self.min_chars:
            return p, "too_short"
        if p in self.base:
            return p, "in_base"
        if p in self.accepted:
            return p, "duplicate"
        return p, None

    def fresh(self) -> "CandidateFilter":
        """The same rules, nothing accepted yet (to count what one source alone would yield)."""
        twin = copy.copy(self)
        twin.accepted = set()
        return twin

    def accept(self, piece: str) -> None:
        self.accepted.add(piece)


def filter_candidates(cands: Iterable[Candidate], filt: CandidateFilter, stats: SourceStats) -> Iterator[Candidate]:
    for c in cands:
        stats.read += 1
        p, reason = filt.check(c.piece)
        if reason:
            stats.rejected[reason] += 1
            continue
        filt.accept(p)
        stats.kept += 1
        yield Candidate(p, c.source, c.score)


# ------------------------------------------------------------------------------------------------ selection
def complete_source(spec: Mapping[str, Any], index: int = 0) -> dict:
    """One entry of tokenizer.candidates.sources with the defaults of its kind (the schema's, one home)."""
    return complete("tokenizer.candidates", {"sources": [dict(spec)]},
                    label="tokenizer.candidates")["sources"][0]


def source_candidates(spec: Mapping[str, Any], train_files: Sequence[str | os.PathLike], seed: int,
                      work_dir: Path | None, index: int) -> tuple[str, Iterator[Candidate], dict]:
    spec = complete_source(spec, index)
    kind = spec.get("kind")
    key = f"tokenizer.candidates.sources[{index}]"
    name = spec.get("name", kind)
    if kind == "train":
        if not train_files:
            raise TokenizerError(f"{key}: kind train needs the zh TRAIN split files; none given")
        t0 = time.time()
        model = train_candidate_model(
            read_texts(train_files), vocab_size=spec["vocab_size"], seed=spec.get("seed", seed),
            character_coverage=spec["character_coverage"], max_piece_length=spec["max_piece_length"],
            num_threads=spec["num_threads"], input_sentence_size=spec["input_sentence_size"])
        info = {"trained_vocab_size": len(load_proto(model).pieces), "train_seconds": round(time.time() - t0, 2),
                "train_files": [str(p) for p in train_files]}
        if work_dir is not None:
            (work_dir / f"candidates-{name}.model").write_bytes(model)
            info["model"] = f"candidates-{name}.model"
        return name, candidates_from_model(model, name), info
    if kind == "train_bpe":
        if not train_files:
            raise TokenizerError(f"{key}: kind train_bpe needs the zh TRAIN split files; none given")
        t0 = time.time()
        cands = train_bpe_candidates(read_texts(train_files), spec["vocab_size"], spec["max_piece_length"], name)
        return name, iter(cands), {"trained_pieces": len(cands), "train_seconds": round(time.time() - t0, 2),
                                   "train_files": [str(p) for p in train_files]}
    if kind == "jieba":
        src, member = spec["source"], spec["member"]
        return name, candidates_from_jieba(read_member(src, member), name, spec["min_freq"]), \
            {"source": src, "member": member}
    if kind == "gguf":
        src, member = spec["source"], spec["member"]
        return name, candidates_from_gguf(read_member(src, member), name), {"source": src, "member": member}
    if kind == "jsonl":
        if not spec.get("path"):
            raise ConfigError(f"{key}.path: required for kind jsonl")
        pieces = read_pieces_jsonl(spec["path"])
        return name, (Candidate(p, name, -i) for i, p in enumerate(pieces)), {"path": str(spec["path"])}
    raise ConfigError(f"{key}.kind: {kind!r} is not one of train, train_bpe, jieba, gguf, jsonl")
