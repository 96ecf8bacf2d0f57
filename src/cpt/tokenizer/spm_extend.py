"""Step 1.6: appending new pieces to the LLaMA SentencePiece model, making every one reachable, keeping English as is.

Scores (config `tokenizer.expansion.score`):
  ranked (default)  new piece i of n (in list order) gets score  max(base merge score) + (n - i):  above every base
                    piece, so inside Chinese text the new pieces merge first (as in the reference), and in the order
                    of the list, which for trained candidates is the trainer's own merge order (so its merge chains
                    still work). Distinct scores also make HF's fast tokenizer (merges ranked by score) agree with
                    sentencepiece (pairs with equal score: leftmost first), which ties cannot guarantee.
  zero              score 0 for every new piece: the reference recipe (ties everywhere; leftmost pair wins).

Reachability, precisely. SentencePiece BPE never undoes a merge, so a piece p appears in the encoding of some text
iff the merges inside p's span build p before anything outside the span takes one of its characters. Inside the span
the merges happen in the same order as when p's characters are encoded alone (same scores, same leftmost tie rule),
and a neighbour character W that occurs in no piece can never merge with anything. Hence

    p is reachable  <=>  the encoding of  W + text(p) + W  contains p's id

where text(p) is p with "▁" written as a space (a "▁"-piece is thus checked at a word start, a piece without "▁"
mid-text) and W is a private-use character that occurs in no piece. `find_unreachable` checks exactly that with the
real sentencepiece library, for every added piece. Reported too: how many pieces the plain text of the piece alone
produces ("plain"; at text start, after the dummy "▁"), which is a stricter, context-dependent notion.

Characters: every character of an added piece is made a piece too (inserted before its first user). SentencePiece
merges any adjacent symbols whose concatenation is a piece, even characters outside the vocabulary; HF's fast BPE
only has merges between two vocabulary pieces, so without this closure the two disagree (measured: 74 of 217 texts
with a 400-piece extension whose characters were cut off).

Repair: for an unreachable p, `bpe_segment` (the same merge rule in Python) gives the dead end [s1, ..., sk] its
characters reach (no adjacent pair is a piece). Adding the left chain s1+s2, s1+s2+s3, ... (each just above p in
rank) makes p reachable; repairs that would need more than `max_repair_pieces` new pieces drop p instead. Dropped
pieces are replaced by the next candidates (pieces list, then the reserve of candidates.jsonl) so the vocabulary
reaches `vocab_size` exactly; the loop re-checks everything until no added piece is unreachable.

English: new ids start after the base ones, base pieces keep ids and scores, and every English line must tokenize
to identical ids with base and extended models, else TokenizerError.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Iterable, Mapping, Sequence

from cpt.core.errors import ConfigError, TokenizerError
from cpt.tokenizer.spm import NORMAL, SPIECE, USER_DEFINED, ModelProto, bpe_segment, copy_proto, merge_scores, processor

log = logging.getLogger(__name__)

# expansion options every family's extend() takes (config tokenizer.expansion)
EXTEND_OPTIONS = ("score", "unreachable", "max_repair_pieces", "max_rounds", "max_intermediate_pieces")
WITNESS_CHARS = ("\U000F0000", "\U000F1234", "\U00100000", "\ue000", "\uf8ff")
SCORE_MODES = ("ranked", "zero")


def new_piece_scores(base: ModelProto, n: int, mode: str = "ranked") -> list[float]:
    if mode == "zero":
        return [0.0] * n
    if mode != "ranked":
        raise ConfigError(f"tokenizer.expansion.score: {mode!r} is not one of {', '.join(SCORE_MODES)}")
    top = max((p.score for p in base.pieces if p.type in (NORMAL, USER_DEFINED)), default=0.0)
    top = max(top, 0.0)
    return [float(top + (n - i)) for i in range(n)]


def append_pieces(base: ModelProto, pieces: Sequence[str], mode: str = "ranked") -> ModelProto:
    """The base model with `pieces` appended (type NORMAL) in order; base pieces untouched."""
    proto = copy_proto(base)
    existing = {p.piece for p in base.pieces}
    for piece, score in zip(pieces, new_piece_scores(base, len(pieces), mode)):
        if piece in existing:
            raise TokenizerError(f"piece {piece!r} is already in the vocabulary")
        existing.add(piece)
        sp = proto.pieces.add()
        sp.piece = piece
        sp.score = score
        sp.type = NORMAL
    proto.trainer_spec.vocab_size = len(proto.pieces)
    return proto


def piece_text(piece: str) -> str:
    return piece.replace(SPIECE, " ")


def witness_char(pieces: Iterable[str]) -> str:
    pieces = list(pieces)
    for w in WITNESS_CHARS:
        if not any(w in p for p in pieces):
            return w
    raise TokenizerError("no private-use character is free of the vocabulary to serve as reachability context")


def find_unreachable(proto: ModelProto, start: int, sp=None) -> list[int]:
    """Ids >= start whose piece no text can produce (exact check, see module docstring)."""
    sp = sp or processor(proto)
    w = witness_char(p.piece for p in proto.pieces)
    ids = list(range(start, len(proto.pieces)))
    texts = [w + piece_text(proto.pieces[i].piece) + w for i in ids]
    encoded = sp.encode(texts, out_type=int)
    return [i for i, enc in zip(ids, encoded) if i not in enc]


def plain_reached(proto: ModelProto, start: int, sp=None) -> list[bool]:
    """For ids >= start: does the piece's own text, encoded alone, contain it?"""
    sp = sp or processor(proto)
    ids = list(range(start, len(proto.pieces)))
    encoded = sp.encode([piece_text(proto.pieces[i].piece) for i in ids], out_type=int)
    return [i in enc for i, enc in zip(ids, encoded)]


def repair_chain(piece: str, scores: Mapping[str, float]) -> list[str] | None:
    """New pieces that make `piece` reachable (the left chain over its dead-end segmentation), or None."""
    segs = bpe_segment(piece, scores)
    if len(segs) < 2:
        return None  # the simulation reaches it: nothing to add
    chain, acc = [], segs[0]
    for s in segs[1:-1]:
        acc += s
        if acc not in scores:
            chain.append(acc)
    return chain


def english_check(base_sp, ext_sp, texts: Sequence[str]) -> dict:
    """Identical ids on every English text, else TokenizerError naming the first difference."""
    from cpt.tokenizer.family import identical_ids

    texts = list(texts)
    return identical_ids(texts, base_sp.encode(texts, out_type=int), ext_sp.encode(texts, out_type=int))


def extend(base: ModelProto, pieces: Sequence[str], reserve: Sequence[str] = (), vocab_size: int | None = None, *,
           score: str, unreachable: str, max_repair_pieces: int, max_rounds: int) -> tuple[ModelProto, dict]:
    """Append pieces (then reserve pieces as replacements) until exactly `vocab_size`, all reachable. The options
    are those of config tokenizer.expansion (cpt.core.schema.complete fills them in)."""
    if unreachable not in ("repair", "drop"):
        raise ConfigError(f"tokenizer.expansion.unreachable: {unreachable!r} is not one of repair, drop")
    start = len(base.pieces)
    base_set = {p.piece for p in base.pieces}
    skipped = {"in_base": 0, "duplicate": 0}

    def pool():
        seen = set()
        for origin, seq in (("list", pieces), ("reserve", reserve)):
            for p in seq:
                if p in base_set:
                    skipped["in_base"] += 1
                elif p in seen:
                    skipped["duplicate"] += 1
                else:
                    seen.add(p)
                    yield p, origin

    source = pool()
    if vocab_size is None:
        vocab_size = start + len(set(pieces) - base_set)
    need = int(vocab_size) - start
    if need < 0:
        raise ConfigError(f"tokenizer.vocab_size: {vocab_size} is smaller than the base vocabulary ({start})")
    current: list[str] = []
    origin: dict[str, str] = {}
    banned: set[str] = set()
    repaired: set[str] = set()

    def fill():
        """Top up to `need` from the pool (lenient: repairs may still add pieces; the loop checks the size)."""
        while len(current) < need:
            nxt = next(source, None)
            if nxt is None:
                return
            p, o = nxt
            if p in banned or p in origin:
                continue
            current.append(p)
            origin[p] = o

    fill()
    counts = {"repaired": 0, "repair_pieces": 0, "char_pieces": 0, "dropped": 0, "displaced": 0}
    examples: dict[str, list] = {"repaired": [], "dropped": [], "displaced": [], "char_pieces": []}

    def close_characters():
        """Every character of an added piece must be a piece itself (inserted just before its first user)."""
        have = base_set | set(current)
        out = []
        for p in current:
            for ch in dict.fromkeys(p):
                if ch not in have and ch != SPIECE:
                    have.add(ch)
                    out.append(ch)
                    origin[ch] = "char"
                    banned.discard(ch)
                    counts["char_pieces"] += 1
                    if len(examples["char_pieces"]) < 20:
                        examples["char_pieces"].append(ch)
            out.append(p)
        current[:] = out

    def trim():
        """Repairs and characters may overshoot: the lowest-ranked list pieces make room (never a repaired piece
        or a character another piece needs); characters left without a user go with them."""
        if len(current) <= need:
            return
        use = Counter(ch for q in current if len(q) > 1 for ch in set(q))
        while len(current) > need:
            for j in range(len(current) - 1, -1, -1):
                q = current[j]
                if origin.get(q) in ("list", "reserve") and not use[q] and q not in repaired:
                    break
            else:
                raise TokenizerError("repairs and their characters alone exceed the vocabulary budget")
            gone = current.pop(j)
            banned.add(gone)
            counts["displaced"] += 1
            if len(examples["displaced"]) < 20:
                examples["displaced"].append(gone)
            if len(gone) > 1:
                for ch in set(gone):
                    use[ch] -= 1
                    if not use[ch] and origin.get(ch) == "char" and ch in current:
                        current.remove(ch)
                        del origin[ch]
                        counts["char_pieces"] -= 1

    rounds = 0
    while True:
        rounds += 1
        while True:  # characters first, then trim, then top up, until stable
            close_characters()
            trim()
            before = len(current)
            fill()
            if len(current) == before:
                break
        proto = append_pieces(base, current, score)
        sp = processor(proto)
        bad = find_unreachable(proto, start, sp)
        log.info("round %d: %d pieces, %d unreachable", rounds, len(current), len(bad))
        if not bad and len(current) == need:
            break
        if not bad:  # all reachable, but the pool ran dry before the size was reached
            raise TokenizerError(f"not enough pieces to reach tokenizer.vocab_size {vocab_size}: "
                                 f"{start + len(current)} after {counts['dropped']} drops; add candidates (pieces "
                                 f"list and the reserve of candidates.jsonl are exhausted)")
        if rounds > max_rounds:
            raise TokenizerError(f"reachability repair did not converge in {max_rounds} rounds "
                                 f"({len(bad)} unreachable); try tokenizer.expansion.unreachable: drop")
        scores = merge_scores(proto)
        bad_pieces = {proto.pieces[i].piece for i in bad}
        new_list: list[str] = []
        for p in current:
            if p not in bad_pieces:
                new_list.append(p)
                continue
            chain = repair_chain(p, scores) if unreachable == "repair" else None
            if chain and len(chain) <= max_repair_pieces and not any(c in banned or c in origin for c in chain):
                for c in chain:
                    new_list.append(c)
                    origin[c] = "repair"
                new_list.append(p)
                repaired.add(p)
                counts["repaired"] += 1
                counts["repair_pieces"] += len(chain)
                if len(examples["repaired"]) < 20:
                    examples["repaired"].append({"piece": p, "added": chain})
            else:
                banned.add(p)
                counts["dropped"] += 1
                if len(examples["dropped"]) < 20:
                    examples["dropped"].append({"piece": p, "segments": bpe_segment(p, scores)})
        current[:] = new_list
    plain = plain_reached(proto, start, sp)
    by_origin: dict[str, int] = {}
    for p in current:
        by_origin[origin[p]] = by_origin.get(origin[p], 0) + 1
    report = {
        "base_vocab_size": start, "vocab_size": len(proto.pieces), "added": len(current), "score": score,
        "unreachable_policy": unreachable, "rounds": rounds,
        "reachable": len(current),  # the loop ends only when find_unreachable is empty
        "plain_reached": sum(plain), "plain_not_reached": len(plain) - sum(plain),
        "plain_not_reached_examples": [p for p, ok in zip(current, plain) if not ok][:30],
        **counts, "by_origin": by_origin, "skipped": skipped, "examples": examples,
        "new_piece_score_range": [proto.pieces[-1].score, proto.pieces[start].score] if current else None,
    }
    return proto, report
