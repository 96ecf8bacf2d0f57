"""The byte-level BPE family (LLaMA-3, SmolLM2, Qwen, GPT-2): a Hugging Face tokenizer.json behind the protocol.

Pieces are GPT-2 byte-level strings (every UTF-8 byte written as one printable character, "Ġ" = space); a piece's
text is its bytes decoded as UTF-8 (None for special tokens and for pieces that are part of a character). The
reference encoder is the `tokenizers` library itself, with special-token text encoded as text.

Extension, with merges. A byte-level BPE applies the lowest-ranked merge among adjacent pairs until none applies,
and an id in the vocabulary that no merge builds is never produced (an "added token" instead is cut out of the
text before BPE and changes how the text around it splits). So each new piece p gets merges, appended after all
existing ones (the lowest priority):

  1. S = the current BPE segmentation of p's bytes (base merges plus the ones added so far, simulated exactly)
  2. add one merge of an adjacent pair of S: a pair inside one character first, then the leftmost pair whose
     concatenation starts and ends on character boundaries, else the leftmost pair; its result is a new vocabulary
     entry unless it already is one (an "intermediate" piece, counted in the target size)
  3. repeat until S == [p]

Because every merge of p ranks above (after) all earlier merges and below all later ones, p's merges complete
before any later merge can touch its bytes, so p encoded on its own -- as one pre-token, which is how it sits
between two characters of another pre-token class -- comes out as p. `unreachable` checks exactly that with the real
library (W + text + W, W a private-use character; `ignore_merges` switched off so the merges alone must build it).
Intermediates that are part of one character exist only as merge states (reported, "partial_intermediates").

English: new merges join only bytes of the new (Chinese) pieces, which are >= 0x80 and align with whole UTF-8
characters, so text without those characters meets none of them; `english_check` verifies it on real text.
A piece the pre-tokenizer would split (e.g. 〇 is a digit to the Digits splitter) or the normalizer would change
can never come out as one token and is skipped, counted by reason; the next candidates fill its place.
"""

from __future__ import annotations

import copy
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

from cpt.core.errors import ConfigError, TokenizerError
from cpt.tokenizer.family import TokenizerFamily, is_byte_level, write_chat_template

WITNESS = "\ue000"
CONFIG_KEYS = ("bos_token", "eos_token", "unk_token", "pad_token")


@lru_cache(maxsize=1)
def byte_table() -> tuple[dict[int, str], dict[str, int]]:
    """GPT-2's reversible byte <-> printable character table."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars, n = list(keep), 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + n)
            n += 1
    enc = {b: chr(c) for b, c in zip(keep, chars)}
    return enc, {v: k for k, v in enc.items()}


def to_byte_level(text: str) -> str:
    enc = byte_table()[0]
    return "".join(enc[b] for b in text.encode("utf-8"))


def from_byte_level(piece: str) -> bytes | None:
    dec = byte_table()[1]
    try:
        return bytes(dec[c] for c in piece)
    except KeyError:
        return None


def _pairs(merges: list) -> list[tuple[str, str]]:
    return [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in merges]


def bpe_segment(word: str, ranks: dict[tuple[str, str], int], extra: dict | None = None) -> list[str]:
    """BPE of one pre-token (byte-level string) as `tokenizers` does it: lowest rank first, leftmost on ties.
    `extra`: merges ranked after all of `ranks` (looked up second)."""
    extra = extra or {}
    parts = list(word)
    while len(parts) > 1:
        best, at = None, -1
        for i in range(len(parts) - 1):
            pair = (parts[i], parts[i + 1])
            r = ranks.get(pair)
            r = extra.get(pair) if r is None else r
            if r is not None and (best is None or r < best):
                best, at = r, i
        if best is None:
            break
        parts[at:at + 2] = [parts[at] + parts[at + 1]]
    return parts


def _next_merge(segments: list[str], bounds: set[int]) -> int:
    """Index i of the pair (segments[i], segments[i+1]) to merge next (see the module docstring, step 2)."""
    starts, pos = [], 0
    for s in segments:
        starts.append(pos)
        pos += len(s)
    starts.append(pos)
    pairs = range(len(segments) - 1)
    inside = [i for i in pairs if not any(starts[i] < b < starts[i + 2] for b in bounds)]
    if inside:
        return inside[0]
    aligned = [i for i in pairs if starts[i] in bounds and starts[i + 2] in bounds]
    return aligned[0] if aligned else 0


class ByteLevelBPETokenizer(TokenizerFamily):
    family = "bpe"

    def __init__(self, data: dict, config: dict | None = None, directory: str | os.PathLike | None = None):
        model = data.get("model") or {}
        if model.get("type") != "BPE" or not is_byte_level(data):
            raise TokenizerError(f"{directory or 'tokenizer.json'}: not a byte-level BPE tokenizer")
        self.data = data
        self.config = dict(config or {})
        self.directory = Path(directory) if directory is not None else None
        self._tok = None
        vocab = model["vocab"]
        ids = {int(i): t for t, i in vocab.items()}
        self.special = {int(a["id"]): a["content"] for a in data.get("added_tokens") or []}
        ids.update(self.special)
        n = max(ids) + 1 if ids else 0
        if len(ids) != n:
            raise TokenizerError(f"{directory or 'tokenizer.json'}: ids are not contiguous ({len(ids)} ids, max {n - 1})")
        self._pieces = [ids[i] for i in range(n)]
        by_text = {t: i for i, t in ids.items()}
        for key in CONFIG_KEYS:
            tok = self.config.get(key)
            tok = tok.get("content") if isinstance(tok, dict) else tok
            setattr(self, key.replace("_token", "_id"), by_text.get(tok) if tok else None)

    # ------------------------------------------------------------------ loading and facts
    @classmethod
    def load(cls, directory: str | os.PathLike) -> "ByteLevelBPETokenizer":
        d = Path(directory)
        path = d / "tokenizer.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            cfg_path = d / "tokenizer_config.json"
            cfg = json.loads(cfg_path.read_text(encoding="utf-8")) if cfg_path.is_file() else {}
        except (OSError, json.JSONDecodeError) as exc:
            raise TokenizerError(f"{path}: cannot be read ({exc})") from None
        return cls(data, cfg, d)

    @property
    def tokenizer(self):
        """The `tokenizers` Tokenizer (special-token text encodes as text)."""
        if self._tok is None:
            from tokenizers import Tokenizer

            self._tok = Tokenizer.from_str(json.dumps(self.data, ensure_ascii=False))
            self._tok.encode_special_tokens = True
        return self._tok

    def pieces(self) -> list[str]:
        return list(self._pieces)

    def __len__(self) -> int:
        return len(self._pieces)

    def piece_texts(self) -> list[str | None]:
        out: list[str | None] = []
        for i, p in enumerate(self._pieces):
            raw = None if i in self.special else from_byte_level(p)
            try:
                out.append(raw.decode("utf-8") if raw else None)
            except UnicodeDecodeError:
                out.append(None)
        return out

    def merges(self) -> list[tuple[str, str]]:
        return _pairs(self.data["model"].get("merges") or [])

    # ------------------------------------------------------------------ encoding
    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        texts = list(texts)
        if not texts:
            return []
        return [e.ids for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]

    def subword_ids(self, pieces: Sequence[str], dummy_prefix: bool | None = None) -> list[list[int]]:
        """Ids of each piece (byte-level strings, e.g. another tokenizer's new pieces) under this tokenizer's merges,
        as one pre-token; parts of a character come out as their bytes' tokens. Byte-level BPE has no dummy prefix
        (the flag is accepted and ignored)."""
        ranks = {pair: r for r, pair in enumerate(self.merges())}
        vocab = self.data["model"]["vocab"]
        out = []
        for p in pieces:
            if from_byte_level(p) is None:
                raise TokenizerError(f"{p!r} is not a byte-level piece")
            out.append([vocab[s] for s in bpe_segment(p, ranks)])
        return out

    def _single_pretoken(self, text: str) -> bool:
        tok = self.tokenizer
        if tok.normalizer is not None and tok.normalizer.normalize_str(text) != text:
            return False
        if tok.pre_tokenizer is None:
            return True
        parts = tok.pre_tokenizer.pre_tokenize_str(text)
        return len(parts) == 1 and parts[0][0] == to_byte_level(text)

    # ------------------------------------------------------------------ extension
    def extend(self, pieces: Sequence[str], reserve: Sequence[str] = (), vocab_size: int | None = None,
               **options: Any) -> tuple["ByteLevelBPETokenizer", dict]:
        """Options (config tokenizer.expansion): max_intermediate_pieces (new entries a piece may bring besides
        itself), unreachable ("drop": no intermediates at all). SentencePiece-only options are recorded, not used."""
        from cpt.core.schema import complete

        start = len(self)
        opts = complete("tokenizer.expansion", {k: v for k, v in options.items() if v is not None})
        policy = opts["unreachable"]
        limit = 0 if policy == "drop" else int(opts["max_intermediate_pieces"])
        target = None if vocab_size is None else int(vocab_size)
        if target is not None and target < start:
            raise ConfigError(f"tokenizer.vocab_size: {target} is smaller than the base vocabulary ({start})")
        data = copy.deepcopy(self.data)
        vocab, merges = data["model"]["vocab"], data["model"].setdefault("merges", [])
        as_strings = bool(merges) and isinstance(merges[0], str)
        ranks = {pair: r for r, pair in enumerate(_pairs(merges))}
        size = start
        origin: dict[str, str] = {}
        counts = {"skipped_in_vocab": 0, "skipped_split_by_pre_tokenizer": 0, "dropped_too_many_intermediates": 0,
                  "skipped_no_room": 0, "duplicates": 0}
        seen: set[str] = set()
        examples: dict[str, list] = {"dropped": [], "intermediates": []}
        pool = [(p, "pieces") for p in pieces] + [(p, "reserve") for p in reserve]
        for text, src in pool:
            if target is not None and size >= target:
                break
            if text in seen:
                counts["duplicates"] += 1
                continue
            seen.add(text)
            word = to_byte_level(text)
            if word in vocab or word in self.special.values():
                counts["skipped_in_vocab"] += 1
                continue
            if not self._single_pretoken(text):
                counts["skipped_split_by_pre_tokenizer"] += 1
                continue
            plan, new = self._plan(text, word, ranks, vocab)
            if len(new) - 1 > limit:
                counts["dropped_too_many_intermediates"] += 1
                if len(examples["dropped"]) < 20:
                    examples["dropped"].append({"piece": text, "segments": bpe_segment(word, ranks)})
                continue
            if target is not None and size + len(new) > target:
                counts["skipped_no_room"] += 1
                continue
            for pair in plan:
                ranks[pair] = len(ranks)
                merges.append(" ".join(pair) if as_strings else list(pair))
            for tok in new:
                vocab[tok] = size
                size += 1
                origin[tok] = src if tok == word else "intermediate"
            if len(new) > 1 and len(examples["intermediates"]) < 20:
                examples["intermediates"].append({"piece": text, "added": [t for t in new if t != word]})
        if target is not None and size != target:
            raise TokenizerError(
                f"tokenizer.vocab_size: {target} needs {target - start} new ids but the pieces and the reserve give "
                f"only {size - start} ({counts}); add candidate sources or lower tokenizer.vocab_size")
        ext = ByteLevelBPETokenizer(data, self.config)
        texts = ext.piece_texts()
        partial = [i for i in range(start, size) if texts[i] is None]
        bad = sorted(set(ext.unreachable(start)) - set(partial))
        if bad:  # the construction guarantees reachability; this is the real library disagreeing with it
            raise TokenizerError(f"byte-level extension: {len(bad)} new pieces are not produced by the tokenizer, "
                                 f"e.g. {[texts[i] for i in bad[:10]]}")
        by_origin: dict[str, int] = {}
        for o in origin.values():
            by_origin[o] = by_origin.get(o, 0) + 1
        report = {"family": self.family, "base_vocab_size": start, "vocab_size": size, "added": size - start,
                  "new_merges": len(ranks) - len(self.merges()), "unreachable_policy": policy,
                  "max_intermediate_pieces": limit, "reachable": size - start - len(partial),
                  "partial_intermediates": len(partial), "by_origin": by_origin, **counts, "examples": examples,
                  "not_used_by_family": sorted(k for k in options if k not in ("unreachable",
                                                                              "max_intermediate_pieces"))}
        return ext, report

    def _plan(self, text: str, word: str, ranks: dict, vocab: dict) -> tuple[list[tuple[str, str]], list[str]]:
        """Merges that make `word` one token, and the vocabulary entries they create (word last)."""
        bounds, pos = {0}, 0
        for ch in text:
            pos += len(ch.encode("utf-8"))
            bounds.add(pos)
        local: dict[tuple[str, str], int] = {}
        plan: list[tuple[str, str]] = []
        new: list[str] = []
        while True:
            seg = bpe_segment(word, ranks, local)
            if len(seg) == 1:
                break
            i = _next_merge(seg, bounds)
            pair = (seg[i], seg[i + 1])
            local[pair] = len(ranks) + len(local)
            plan.append(pair)
            tok = pair[0] + pair[1]
            if tok not in vocab and tok not in new:
                new.append(tok)
        if not new or new[-1] != word:  # the word itself must be the last new entry
            new = [t for t in new if t != word] + [word]
        return plan, new

    def unreachable(self, start: int) -> list[int]:
        """Ids >= start not produced from W + text + W by the merges alone (ignore_merges off); ids without a
        text (special tokens, parts of a character) count as unreachable."""
        data = copy.deepcopy(self.data)
        data["model"]["ignore_merges"] = False
        strict = ByteLevelBPETokenizer(data, self.config)
        texts = strict.piece_texts()
        ids = [i for i in range(start, len(self))]
        probe = [i for i in ids if texts[i]]
        enc = strict.encode([WITNESS + texts[i] + WITNESS for i in probe])
        ok = {i for i, e in zip(probe, enc) if i in e}
        return [i for i in ids if i not in ok]

    # ------------------------------------------------------------------ HF directories
    def save(self, out_dir: str | os.PathLike, model_max_length: int = 4096,
             chat_template: str | None = None) -> Path:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "tokenizer.json").write_text(json.dumps(self.data, ensure_ascii=False), encoding="utf-8")
        cfg = {k: v for k, v in self.config.items() if k not in ("tokenizer_file", "added_tokens_decoder")}
        # a causal LM takes no token_type_ids (PreTrainedTokenizerFast returns them unless told; generate() refuses them)
        cfg.update({"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": int(model_max_length),
                    "clean_up_tokenization_spaces": False, "model_input_names": ["input_ids", "attention_mask"]})
        for key in CONFIG_KEYS:
            tid = getattr(self, key.replace("_token", "_id"))
            if tid is not None:
                cfg[key] = self._pieces[tid]
        (out / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n",
                                                   encoding="utf-8")
        special = {k: cfg[k] for k in CONFIG_KEYS if k in cfg}
        (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2, ensure_ascii=False) + "\n",
                                                     encoding="utf-8")
        write_chat_template(out, chat_template)
        for stale in ("tokenizer.model", "vocab.json", "merges.txt"):  # never left from another tokenizer
            if (out / stale).exists():
                (out / stale).unlink()
        self.directory = out
        self.config = json.loads((out / "tokenizer_config.json").read_text(encoding="utf-8"))
        return out

    def check_agreement(self, out_dir: str | os.PathLike, texts: Sequence[str], what: str = "tokenizer",
                        raise_on_mismatch: bool = True) -> dict:
        """transformers' AutoTokenizer (fast; byte-level BPE has no slow counterpart here) on the saved directory
        against the `tokenizers` encoder."""
        from transformers import AutoTokenizer

        hf = AutoTokenizer.from_pretrained(str(out_dir))
        texts = list(texts)
        want = self.encode(texts)
        got = [hf.encode(t, add_special_tokens=False) for t in texts]
        bad = [i for i, (a, b) in enumerate(zip(want, got)) if a != b]
        if bad and raise_on_mismatch:
            i = bad[0]
            raise TokenizerError(f"{what} in {out_dir}: HF fast tokenizer differs on {len(bad)} of {len(texts)} "
                                 f"texts; first {texts[i][:80]!r}: {got[i][:20]} vs {want[i][:20]}")
        return {"texts": len(texts), "mismatches": {"fast": len(bad)}, "hf_class": type(hf).__name__}
