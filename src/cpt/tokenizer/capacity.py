"""Can the configured candidate sources yield the pieces the target vocabulary needs? Checked in seconds, before
anything expensive: at config validation where it is knowable without reading a file (a LLaMA-2 base and only
`train` sources, whose capacity is their vocab_size), otherwise as the first thing the pieces step does (word lists
and vocabularies are read and filtered; a `train` source counts with its vocab_size). The error names
`tokenizer.candidates` and the sources to add."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from cpt.core.errors import TokenizerError
from cpt.tokenizer.candidates import CandidateFilter, SourceStats, complete_source, filter_candidates

LLAMA2_PIECES = 32000          # published: the LLaMA-2 SentencePiece vocabulary (tokenizer.base kind llama2_gguf)
TRAIN_RESERVED = 3 + 256       # a trained candidate model's non-NORMAL pieces: <unk> <s> </s> + 256 byte pieces
ADD_SOURCES = {"gguf": "{kind: gguf} (the pinned Baichuan vocabulary)", "jieba": "{kind: jieba} (jieba's word list)",
               "train": "{kind: train, vocab_size: N} (more BPE pieces of your corpus)"}


def train_capacity(spec: Mapping[str, Any]) -> int:
    """At most this many candidates come out of a `train` source (its model's NORMAL pieces)."""
    return max(int(complete_source(spec)["vocab_size"]) - TRAIN_RESERVED, 0)


def capacity_message(need: int, target: int, bounds: Mapping[str, int], kinds: Sequence[str]) -> str:
    """The error of sources that cannot yield `need` pieces: names tokenizer.candidates and what to add."""
    listed = ", ".join(f"{n}: at most {b:,}" for n, b in bounds.items())
    add = [text for kind, text in ADD_SOURCES.items() if kind not in kinds or kind == "train"]
    return (f"tokenizer.candidates: the configured sources can yield at most {sum(bounds.values()):,} new pieces "
            f"({listed}) but tokenizer.vocab_size {target:,} needs {need:,}; add to tokenizer.candidates.sources "
            f"{' or '.join(add)}, or lower tokenizer.vocab_size")


def static_capacity_problem(section: Mapping[str, Any]) -> str | None:
    """What config validation can know without reading any file: a LLaMA-2 base (32,000 pieces) and only `train`
    sources, whose capacity is their vocab_size. None when it suffices or cannot be known yet."""
    from cpt.core.schema import default

    base = section.get("base") or {}
    sources = (section.get("candidates") or {}).get("sources") or [{"kind": "train"}]
    target = section.get("vocab_size")
    if (section.get("pieces_file") or target is None or base.get("kind", default("tokenizer.base.kind")) != "llama2_gguf"
            or base.get("member", default("tokenizer.base.member")) != default("tokenizer.base.member")
            or any(s.get("kind") != "train" for s in sources)):
        return None
    need = int(target) - LLAMA2_PIECES
    bounds = {f"sources[{i}] {s.get('name', 'train')}": train_capacity(s) for i, s in enumerate(sources)}
    return None if sum(bounds.values()) >= need else capacity_message(need, int(target), bounds, ["train"])


def check_capacity(sources: Sequence[Mapping[str, Any]], need: int | None, target: int | None, filt: CandidateFilter,
                   read_source: Callable) -> dict:
    """The first thing the pieces step does (seconds, before any BPE training): fail when the sources together
    cannot yield `need` pieces. `read_source(spec, index) -> (name, candidates, info)` reads one source; the read
    (non-train) sources are returned by index, for the selection to reuse."""
    loaded, bounds = {}, {}
    for i, spec in enumerate(sources):
        label = f"sources[{i}] {spec.get('name', spec.get('kind'))}"
        if spec.get("kind") == "train":
            bounds[label] = train_capacity(spec)
            continue
        name, cands, info = read_source(spec, i)
        cands = list(cands)
        probe = filt.fresh()
        bounds[label] = sum(1 for _ in filter_candidates(cands, probe, SourceStats()))
        loaded[i] = (name, iter(cands), info)
    if need is not None and sum(bounds.values()) < need:
        raise TokenizerError(capacity_message(need, int(target), bounds, [s.get("kind") for s in sources]))
    return loaded
