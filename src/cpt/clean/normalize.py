"""Text normalisation before filtering and deduplication; every step is optional (config `clean.normalize`).

Steps, in this order (each one a pure function of the text):

1. ``unicode_fix`` — repair mojibake and broken escapes with ftfy (UTF-8 read as Latin-1/cp1252, HTML
   entities, C1 controls, surrogates), then NFC; then UTF-8 read as GBK, which ftfy does not cover. ftfy's own width and quote rewrites are turned off: the width
   policy is step 3, and curly quotes “” are ordinary Chinese punctuation.
2. ``whitespace`` — drop control and zero-width characters (keeping newline and tab), unify line breaks, map
   Unicode spaces to ' ', collapse runs of spaces, strip every line, keep at most one empty line in a row.
3. ``width`` — full-width/half-width policy:
   ``none`` (keep), ``ascii_alnum`` (full-width digits and Latin letters -> ASCII; full-width punctuation such
   as ，。！？（）： stays, as Chinese typesetting wants), ``ascii_all`` (every full-width ASCII form and the
   ideographic space -> ASCII), ``nfkc`` (Unicode NFKC: also folds compatibility characters; lossy).
4. ``t2s`` — Traditional -> Simplified Chinese with OpenCC's ``t2s`` table (Chinese categories only).
5. ``strip_cjk_spaces`` — remove spaces between two CJK characters (word-segmented text such as tagged corpora).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

WIDTH_POLICIES = ("none", "ascii_alnum", "ascii_all", "nfkc")

# characters removed outright: C0/C1 controls except \t \n, zero-width and bidi marks, BOM, soft hyphen
_DROP_CHARS = "".join(
    [chr(c) for c in range(0x00, 0x20) if chr(c) not in "\t\n"]
    + [chr(c) for c in range(0x7F, 0xA0)]
    + ["\u00ad", "\u200b", "\u200c", "\u200d", "\u200e", "\u200f", "\u202a", "\u202b", "\u202c", "\u202d",
       "\u202e", "\u2060", "\u2066", "\u2067", "\u2068", "\u2069", "\ufeff"]
)
_DROP_TABLE = {ord(c): None for c in _DROP_CHARS}
# Unicode horizontal spaces -> ' ' (the ideographic space U+3000 is left to the width policy)
_SPACE_TABLE = {ord(c): " " for c in "\t\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
                                     "\u2009\u200a\u202f\u205f"}
_LINE_BREAKS = re.compile(r"\r\n|[\r\u2028\u2029\x0b\x0c\x85]")
_SPACES = re.compile(r" {2,}")
_BLANK_RUNS = re.compile(r"\n{3,}")

_FW_ALNUM = {c: c - 0xFEE0 for c in list(range(0xFF10, 0xFF1A)) + list(range(0xFF21, 0xFF3B))
             + list(range(0xFF41, 0xFF5B))}
_FW_ALL = {c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)}
_FW_ALL[0x3000] = 0x20

_CJK = (r"\u2e80-\u2fdf\u3005\u3007\u3021-\u3029\u3038-\u303b\u3040-\u30ff\u3100-\u312f\u3400-\u4dbf"
        r"\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f\u3000-\u303f\uff00-\uff0f\uff1a-\uff20")
_FTFY_NEEDED = re.compile(r"[\u0080-\u00ff&\x1b\ufb00-\ufb06\ud800-\udfff\ufffd]")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")
_CJK_SPACE = re.compile(rf"(?<=[{_CJK}]) +(?=[{_CJK}])")


def fix_unicode(text: str) -> str:
    import ftfy

    if not _FTFY_NEEDED.search(text):
        # nothing ftfy would change but the normal form: every mojibake of UTF-8 read as Latin-1/cp1252
        # contains a character in U+0080-U+00FF (the lead bytes), entities need '&', escapes need ESC
        text = text if unicodedata.is_normalized("NFC", text) else unicodedata.normalize("NFC", text)
        return fix_gbk_mojibake(text)
    text = ftfy.fix_text(text, fix_character_width=False, uncurl_quotes=False, normalization="NFC", explain=False)
    return fix_gbk_mojibake(text)


def fix_gbk_mojibake(text: str) -> str:
    """Undo UTF-8 bytes that were decoded as GBK (e.g. '涓枃' for '中文'), which ftfy does not handle.

    Applied only when the whole text re-encodes to GBK and those bytes are strictly valid UTF-8 containing
    mostly Han characters: ordinary Chinese text almost never passes both tests."""
    if text.isascii():
        return text
    try:
        repaired = text.encode("gbk").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text
    if repaired == text:
        return text
    han = len(_HAN.findall(repaired))
    # the repaired text must read as Chinese (short names such as '目录' otherwise decode to Cyrillic noise)
    return repaired if han >= 2 and han >= 0.5 * len(repaired.replace(" ", "")) else text


def normalize_whitespace(text: str) -> str:
    text = _LINE_BREAKS.sub("\n", text)
    text = text.translate(_DROP_TABLE).translate(_SPACE_TABLE)
    text = _SPACES.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    text = _BLANK_RUNS.sub("\n\n", text)
    return text.strip()


def apply_width(text: str, policy: str) -> str:
    if policy == "none":
        return text
    if policy == "ascii_alnum":
        return text.translate(_FW_ALNUM)
    if policy == "ascii_all":
        return text.translate(_FW_ALL)
    if policy == "nfkc":
        return unicodedata.normalize("NFKC", text)
    raise ValueError(f"unknown width policy {policy!r}; one of {WIDTH_POLICIES}")


@lru_cache(maxsize=4)
def _opencc(config: str):
    """(converter, trigger characters). A text that contains none of the trigger characters cannot match any
    dictionary entry, so converting it is the identity and is skipped (opencc-python is pure Python; most
    modern Simplified text has no trigger character). Triggers: every single character the dictionaries map
    to something else, plus the last character of each entry made only of unchanged characters."""
    import opencc

    cc = opencc.OpenCC(config)
    cc.convert("")
    try:
        tables = [entry[2] for group in cc._dict_chain_data for entry in group]
        changed = {k for t in tables for k, v in t.items() if len(k) == 1 and v != k}
        triggers = set(changed)
        triggers.update(k[-1] for t in tables for k in t if k and not any(c in changed for c in k))
        return cc, frozenset(triggers)
    except (AttributeError, IndexError, TypeError):  # another opencc layout: always convert
        return cc, None


def to_simplified(text: str, config: str = "t2s") -> str:
    cc, triggers = _opencc(config)
    if triggers is not None and triggers.isdisjoint(text):
        return text
    return cc.convert(text)


def strip_cjk_spaces(text: str) -> str:
    return _CJK_SPACE.sub("", text)


def normalize_text(text: str, params: dict, language: str) -> str:
    """Apply the configured steps (see module docstring) to one text. `params` is `clean.normalize`, completed
    with the schema's defaults (cpt.clean.settings)."""
    if not text:
        return text
    if params["unicode_fix"]:
        text = fix_unicode(text)
    if params["whitespace"]:
        text = normalize_whitespace(text)
    text = apply_width(text, params["width"])
    if language == "zh" and params["t2s"]:
        text = to_simplified(text, params["opencc_config"])
    if params["strip_cjk_spaces"]:
        text = strip_cjk_spaces(text)
    if params["whitespace"] and params["width"] in ("ascii_all", "nfkc"):
        text = normalize_whitespace(text)  # the width step may have produced new spaces
    return text
