"""Heuristic document filters that understand Chinese as well as English.

Each filter looks at one normalised document and returns the name of the reason it fails, or None. The
pipeline applies them in ``FILTER_ORDER`` and the first failing one is the document's only drop reason, so
every input record is counted exactly once. Thresholds come from config (`clean.filters.<language>`, overridden
per category by `clean.categories.<name>.filters`); a threshold set to null turns that check off.

Order and reasons (cheap and unambiguous checks first, the language model last):

====================  ==================  ===================================================================
filter                reason(s)           what it measures
====================  ==================  ===================================================================
length                too_short,          characters that are not whitespace (Chinese has no spaces, so
                      too_long            characters, not words, are the unit for both languages)
mojibake              mojibake            U+FFFD replacement characters, or ftfy's "looks like mojibake" test
                                          (what normalisation could not repair)
script                low_script_ratio,   share of the expected script among non-space characters (Han for
                      too_many_digits,    zh, Latin letters for en); share of digits; share of symbols
                      too_many_symbols    (Unicode category S*, i.e. not letters, digits or punctuation)
repeated_lines        repeated_lines      share of lines, and of characters, in lines that repeat an earlier line
                                          (only for documents with at least `min_lines` lines; lines shorter
                                          than `dup_line_min_chars` never count as repeats)
repeated_ngrams       repeated_ngrams     Gopher-style: share of characters covered by the most frequent n-gram
                                          (`top_ngram`) and by n-grams seen more than once (`dup_ngram`); n-grams
                                          of characters for zh, of words for en; only for documents with at
                                          least `ngram_min_units` units
boilerplate           boilerplate         share of lines containing a boilerplate marker (case-insensitive)
language              wrong_language      py3langid (bundled model, no download): total probability of the
                                          accepted labels (zh: zh, wuu, yue; en: en) below `lang_min_prob`;
                                          only for documents with at least `lang_min_chars` characters; reads
                                          the first 2,000 characters
====================  ==================  ===================================================================
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property, lru_cache

FILTER_ORDER = ("length", "mojibake", "script", "repeated_lines", "repeated_ngrams", "boilerplate", "language")
FILTER_REASONS = {
    "length": ("too_short", "too_long"),
    "mojibake": ("mojibake",),
    "script": ("low_script_ratio", "too_many_digits", "too_many_symbols"),
    "repeated_lines": ("repeated_lines",),
    "repeated_ngrams": ("repeated_ngrams",),
    "boilerplate": ("boilerplate",),
    "language": ("wrong_language",),
}
# labels py3langid gives to text of each corpus language
LANGID_MAX_CHARS = 2000  # language identification reads the start of a document (the model is per byte)
LANGUAGE_LABELS = {"zh": ("zh", "wuu", "yue"), "en": ("en",)}

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")
_LATIN = re.compile(r"[A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f]")
_DIGIT = re.compile(r"\d")
_SPACE = re.compile(r"\s")
# not symbols: whitespace, digits, ASCII letters, Han, and the circle used as a Chinese zero (二○○○年)
_SIMPLE = re.compile(r"[\s\dA-Za-z\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u25cb\u3007]")
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")


@dataclass
class TextStats:
    """Counts on one document, computed once (lazily) and shared by the filters and the quality score."""

    text: str
    language: str
    _cache: dict = field(default_factory=dict, repr=False)

    @cached_property
    def chars(self) -> int:
        """Characters that are not whitespace."""
        return len(self.text) - len(_SPACE.findall(self.text))

    @cached_property
    def han(self) -> int:
        return len(_HAN.findall(self.text))

    @cached_property
    def latin(self) -> int:
        return len(_LATIN.findall(self.text))

    @cached_property
    def digits(self) -> int:
        return len(_DIGIT.findall(self.text))

    @cached_property
    def symbols(self) -> int:
        rest = _SIMPLE.sub("", self.text)
        return sum(1 for ch in rest if unicodedata.category(ch)[0] == "S")

    @cached_property
    def lines(self) -> list[str]:
        return [line for line in self.text.split("\n") if line.strip()]

    @cached_property
    def units(self) -> list[str]:
        """N-gram units: characters (not whitespace) for zh, lower-cased words for en."""
        if self.language == "zh":
            return [ch for ch in self.text if not ch.isspace()]
        return [w.lower() for w in _WORD.findall(self.text)]

    def ratio(self, count: int) -> float:
        return count / self.chars if self.chars else 0.0

    @cached_property
    def script_ratio(self) -> float:
        """Share of the language's own script (Han for zh, Latin for en) among non-space characters."""
        return self.ratio(self.han if self.language == "zh" else self.latin)

    @cached_property
    def duplicate_lines(self) -> tuple[float, float]:
        return self.duplicate_lines_min(0)

    def duplicate_lines_min(self, min_chars: int) -> tuple[float, float]:
        """(share of lines that repeat an earlier line, share of characters in those lines); lines shorter than
        `min_chars` never count as repeats (speaker names in a play, 'Exit', section markers)."""
        lines = self.lines
        if not lines:
            return 0.0, 0.0
        seen: set[str] = set()
        dup_lines = dup_chars = total_chars = 0
        for line in lines:
            key = line.strip()
            total_chars += len(key)
            if len(key) < min_chars:
                continue
            if key in seen:
                dup_lines += 1
                dup_chars += len(key)
            else:
                seen.add(key)
        return dup_lines / len(lines), (dup_chars / total_chars if total_chars else 0.0)

    @cached_property
    def _unit_seq(self):
        """(units as a string for zh / a tuple of words for en, prefix sums of unit lengths)."""
        units = self.units
        if self.language == "zh":
            return "".join(units), None
        cum = [0]
        for u in units:
            cum.append(cum[-1] + len(u))
        return tuple(units), cum

    def _grams(self, n: int) -> list:
        seq, _ = self._unit_seq
        return [seq[i:i + n] for i in range(len(seq) - n + 1)]

    def _covered(self, start: int, end: int) -> int:
        """Characters in units [start, end)."""
        _, cum = self._unit_seq
        return end - start if cum is None else cum[end] - cum[start]

    @cached_property
    def unit_chars(self) -> int:
        return self._covered(0, len(self.units))

    def top_ngram_share(self, n: int) -> float:
        """Share of unit characters covered by the single most frequent n-gram (counting all occurrences)."""
        key = ("top", n)
        if key not in self._cache:
            counts = Counter(self._grams(n))
            value = 0.0
            if counts and self.unit_chars:
                best = max(counts.values())
                if best > 1:
                    gram = min(g for g, c in counts.items() if c == best)
                    glen = len(gram) if isinstance(gram, str) else sum(len(u) for u in gram)
                    value = min(1.0, best * glen / self.unit_chars)
            self._cache[key] = value
        return self._cache[key]

    def dup_ngram_share(self, n: int) -> float:
        """Share of unit characters covered by n-grams that occur more than once."""
        key = ("dup", n)
        if key not in self._cache:
            grams = self._grams(n)
            counts = Counter(grams)
            covered = 0
            reach = 0  # units before `reach` are already counted
            for i, g in enumerate(grams):
                if counts[g] > 1:
                    start = max(i, reach)
                    if start < i + n:
                        covered += self._covered(start, i + n)
                        reach = i + n
            self._cache[key] = covered / self.unit_chars if self.unit_chars else 0.0
        return self._cache[key]

    @cached_property
    def language_probability(self) -> float:
        """Total py3langid probability of the labels that mean this document's language."""
        ranked = dict(_identifier().rank(self.text[:LANGID_MAX_CHARS]))
        return float(sum(ranked.get(label, 0.0) for label in LANGUAGE_LABELS.get(self.language, (self.language,))))

    def boilerplate_share(self, markers: tuple[str, ...]) -> float:
        lines = self.lines
        if not lines or not markers:
            return 0.0
        hits = sum(1 for line in lines if any(m in line.lower() for m in markers))
        return hits / len(lines)


@lru_cache(maxsize=1)
def _identifier():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def _get(params: dict, key: str):
    return params.get(key)


def check_length(s: TextStats, p: dict) -> str | None:
    if _get(p, "min_chars") is not None and s.chars < p["min_chars"]:
        return "too_short"
    if _get(p, "max_chars") is not None and s.chars > p["max_chars"]:
        return "too_long"
    return None


def check_mojibake(s: TextStats, p: dict) -> str | None:
    limit = _get(p, "max_replacement_ratio")
    if limit is not None and s.text.count("\ufffd") > limit * max(s.chars, 1):
        return "mojibake"
    if p["ftfy_badness"]:
        from ftfy.badness import is_bad

        if is_bad(s.text):
            return "mojibake"
    return None


def check_script(s: TextStats, p: dict) -> str | None:
    if not s.chars:
        return None
    if _get(p, "min_script_ratio") is not None and s.script_ratio < p["min_script_ratio"]:
        return "low_script_ratio"
    if _get(p, "max_digit_ratio") is not None and s.ratio(s.digits) > p["max_digit_ratio"]:
        return "too_many_digits"
    if _get(p, "max_symbol_ratio") is not None and s.ratio(s.symbols) > p["max_symbol_ratio"]:
        return "too_many_symbols"
    return None


def check_repeated_lines(s: TextStats, p: dict) -> str | None:
    if len(s.lines) < (p.get("min_lines") or 1):
        return None
    line_share, char_share = s.duplicate_lines_min(p.get("dup_line_min_chars") or 0)
    if _get(p, "max_dup_line_ratio") is not None and line_share > p["max_dup_line_ratio"]:
        return "repeated_lines"
    if _get(p, "max_dup_line_char_ratio") is not None and char_share > p["max_dup_line_char_ratio"]:
        return "repeated_lines"
    return None


def check_repeated_ngrams(s: TextStats, p: dict) -> str | None:
    if len(s.units) < (p.get("ngram_min_units") or 0):
        return None
    for n, limit in sorted((int(k), v) for k, v in (p.get("top_ngram") or {}).items()):
        if limit is not None and s.top_ngram_share(n) > limit:
            return "repeated_ngrams"
    for n, limit in sorted((int(k), v) for k, v in (p.get("dup_ngram") or {}).items()):
        if limit is not None and s.dup_ngram_share(n) > limit:
            return "repeated_ngrams"
    return None


def check_boilerplate(s: TextStats, p: dict) -> str | None:
    markers = tuple(m.lower() for m in (p.get("boilerplate_markers") or ()))
    limit = _get(p, "max_boilerplate_line_ratio")
    if limit is not None and markers and s.boilerplate_share(markers) > limit:
        return "boilerplate"
    return None


def check_language(s: TextStats, p: dict) -> str | None:
    limit = _get(p, "lang_min_prob")
    if limit is None or s.chars < (p.get("lang_min_chars") or 0):
        return None
    return "wrong_language" if s.language_probability < limit else None


CHECKS = {
    "length": check_length,
    "mojibake": check_mojibake,
    "script": check_script,
    "repeated_lines": check_repeated_lines,
    "repeated_ngrams": check_repeated_ngrams,
    "boilerplate": check_boilerplate,
    "language": check_language,
}


def first_failure(stats: TextStats, params: dict, order=FILTER_ORDER) -> str | None:
    """Reason of the first filter (in `order`) the document fails, or None if it passes all."""
    for name in order:
        reason = CHECKS[name](stats, params)
        if reason is not None:
            return reason
    return None
