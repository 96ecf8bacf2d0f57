"""The demo corpora: raw jsonl per category from real text in the pinned archives (or the user's jsonl files),
a deterministic held-out split, and demo SFT conversations (idioms). `cpt build-corpus`, `cpt split-corpus`.

Layout: results/<exp>/corpus/raw/<category>.jsonl (+manifest.json, provenance.json),
results/<exp>/corpus/{train,heldout}/<category>.jsonl (+manifest.json, provenance.json),
results/<exp>/corpus/sft/{train,heldout}.jsonl (+manifest.json, provenance.json).
"""

from __future__ import annotations

from cpt.corpus.build import build_corpus, normalize_section, seeded_hash
from cpt.corpus.conversations import build_idiom_sft
from cpt.corpus.split import heldout_mask, normalize_split, split_corpus

__all__ = ["build_corpus", "split_corpus", "build_idiom_sft", "normalize_section", "heldout_mask", "seeded_hash",
           "normalize_split"]
