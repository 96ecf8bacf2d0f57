"""Exact and near-duplicate detection, deterministic, within and across categories.

Exact: a blake2b digest of the normalised text, case-folded and with all whitespace removed; the first
document (in processing order) with a digest is kept, later ones are ``exact_duplicate``.

Near: MinHash signatures (datasketch, ``MinHash.generator`` = its bulk path, fixed ``seed``, permutation scheme
``affine32``, which pre-mixes each input hash, so the C-speed ``zlib.crc32`` is a sound shingle hash and ~3x
faster than the default SHA-1 here) over shingles —
character n-grams for Chinese (whitespace removed; Chinese has no word boundaries) and lower-cased word n-grams
for English — indexed in a ``MinHashLSH``. Documents are visited in a fixed order (categories in sorted order,
records in file order). A document whose LSH candidates include a kept document with estimated Jaccard
similarity >= ``threshold`` is a ``near_duplicate`` of the earliest such document; otherwise it is kept and
inserted. Clusters are therefore "a kept representative + the documents dropped as its duplicates", and the
result depends only on the inputs, the seed and the order — never on process scheduling.

Scope ``global`` (default) shares one index across categories (a news article repeated in two categories is
kept once, in the first category in sorted order); ``category`` gives each category its own index.
Signatures are computed in worker processes (see pipeline.py); the index lives in one process.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from dataclasses import dataclass, field

import numpy as np

_WS = re.compile(r"\s+")
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
SCHEME = "affine32"


def exact_key(text: str) -> str:
    canon = _WS.sub("", text.casefold())
    return hashlib.blake2b(canon.encode("utf-8"), digest_size=16).hexdigest()


def shingles(text: str, language: str, n: int) -> list[bytes]:
    """Distinct shingles of a text, sorted (so the input to MinHash is independent of set ordering)."""
    if language == "zh":
        s = _WS.sub("", text)
        grams = {s[i:i + n] for i in range(max(1, len(s) - n + 1))} if s else set()
    else:
        words = [w.lower() for w in _WORD.findall(text)]
        grams = {" ".join(words[i:i + n]) for i in range(max(1, len(words) - n + 1))} if words else set()
    return sorted(g.encode("utf-8") for g in grams)


def signatures(shingle_lists: list[list[bytes]], num_perm: int, seed: int) -> np.ndarray:
    """MinHash signatures, one row per document (uint32, shape (n, num_perm)), via datasketch's bulk path.

    A document with no shingles (empty text) gets the all-max "empty" signature; it only matches other empty
    documents, which the exact pass has already caught."""
    from datasketch import MinHash

    out = np.empty((len(shingle_lists), num_perm), dtype=np.uint32)
    gen = MinHash.generator(shingle_lists, num_perm=num_perm, seed=seed, scheme=SCHEME, hashfunc=zlib.crc32)
    for i, mh in enumerate(gen):
        out[i] = mh.hashvalues
    return out


@dataclass
class Cluster:
    representative: tuple  # (category, line) of the kept document
    members: list = field(default_factory=list)  # (category, line, similarity, kind) of dropped duplicates


class Deduplicator:
    """Online exact + near dedup over documents visited in a fixed order (see module docstring)."""

    def __init__(self, *, exact: bool, near: bool, threshold: float, num_perm: int, seed: int, scope: str,
                 bands: int | None = None, rows: int | None = None):
        if scope not in ("global", "category"):
            raise ValueError(f"dedup scope must be 'global' or 'category', got {scope!r}")
        self.exact, self.near, self.threshold = exact, near, threshold
        self.num_perm, self.seed, self.scope = num_perm, seed, scope
        self.params = (bands, rows) if bands and rows else None
        self._exact: dict[tuple, int] = {}
        self._lsh: dict[str, object] = {}
        self._sigs: dict[int, np.ndarray] = {}
        self.meta: dict[int, tuple] = {}  # doc id -> (category, line) of kept documents
        self.clusters: dict[int, Cluster] = {}

    def _index(self, category: str):
        from datasketch import MinHashLSH

        name = category if self.scope == "category" else ""
        if name not in self._lsh:
            self._lsh[name] = MinHashLSH(threshold=self.threshold, num_perm=self.num_perm, params=self.params)
        return self._lsh[name]

    def add(self, doc_id: int, category: str, line: int, key: str | None, signature: np.ndarray | None):
        """Visit one document; returns (reason, representative doc id) — (None, None) if it is kept."""
        from datasketch import LeanMinHash

        scope_key = category if self.scope == "category" else ""
        if self.exact and key is not None:
            rep = self._exact.get((scope_key, key))
            if rep is not None:
                self._cluster(rep).members.append((category, line, 1.0, "exact"))
                return "exact_duplicate", rep
        lean = None
        if self.near and signature is not None:
            lsh = self._index(category)
            lean = LeanMinHash(seed=self.seed, hashvalues=signature, scheme=SCHEME)
            best = None
            for cand in sorted(lsh.query(lean)):
                sim = float(np.mean(self._sigs[cand] == signature))
                if sim >= self.threshold:
                    best = (cand, sim)
                    break
            if best is not None:
                self._cluster(best[0]).members.append((category, line, round(best[1], 4), "near"))
                return "near_duplicate", best[0]
        if self.exact and key is not None:
            self._exact[(scope_key, key)] = doc_id
        if lean is not None:
            self._index(category).insert(doc_id, lean, check_duplication=False)
            self._sigs[doc_id] = signature
        self.meta[doc_id] = (category, line)
        return None, None

    def _cluster(self, rep: int) -> Cluster:
        if rep not in self.clusters:
            self.clusters[rep] = Cluster(representative=self.meta[rep])
        return self.clusters[rep]

    def summary(self, top: int = 5) -> dict:
        """Cluster counts and the largest clusters (for the report)."""
        clusters = list(self.clusters.values())
        members = [m for c in clusters for m in c.members]
        largest = sorted(clusters, key=lambda c: (-len(c.members), c.representative))[:top]
        return {
            "clusters": len(clusters),
            "exact_duplicates": sum(1 for m in members if m[3] == "exact"),
            "near_duplicates": sum(1 for m in members if m[3] == "near"),
            "cross_category_duplicates": sum(1 for c in clusters for m in c.members if m[0] != c.representative[0]),
            "largest": [
                {"representative": {"category": c.representative[0], "line": c.representative[1]},
                 "size": 1 + len(c.members),
                 "members": [{"category": m[0], "line": m[1], "similarity": m[2], "kind": m[3]}
                             for m in c.members[:5]]}
                for c in largest
            ],
        }
