"""A documented quality score per document, in [0, 1], from the same statistics the filters use.

score = sum_i w_i * f_i / sum_i w_i over these features (weights in `clean.quality.weights`; weight 0 drops one):

==============  ======================================================================================
feature         value in [0, 1]
==============  ======================================================================================
length          min(1, log(1 + chars) / log(1 + length_ref)): longer documents carry more context;
                saturates at `length_ref` characters (zh default 200, en default 500)
script          share of the language's own script among non-space characters (Han for zh, Latin for en),
                divided by `script_ref` (zh 0.6, en 0.6) and capped at 1
clean_chars     1 - (share of digits + share of symbols), floored at 0
unique_lines    1 - share of lines that repeat an earlier line
unique_ngrams   1 - share of characters covered by repeated 3-grams (characters for zh, words for en)
end_punct       share of lines that end like a sentence (。！？…”」』）.!?"' and the like)
language        py3langid probability of the document's language (the label group of the filters)
hook            optional: a user function "module:function" called as f(text, language) -> float in [0, 1]
                (the place for a model's perplexity mapped to [0, 1], e.g. exp(-bits_per_byte));
                weight `hook_weight`, off unless `hook` is set
==============  ======================================================================================

A category keeps documents whose score is >= `min_score` (per language, overridable per category) and, if
`top_fraction` is set, only the best `top_fraction` of them (ties broken by input order). The cut is applied
after the filters and before deduplication, so a kept duplicate-cluster representative is never a low-quality
document. Category tags are kept: every output record carries its file's category.
"""

from __future__ import annotations

import importlib
import math
from functools import lru_cache

from cpt.clean.filters import TextStats
from cpt.core.errors import ConfigError

FEATURES = ("length", "script", "clean_chars", "unique_lines", "unique_ngrams", "end_punct", "language")
_END = tuple("。！？…”」』）》.!?\"')’:：；;")


def features(stats: TextStats, params: dict) -> dict[str, float]:
    weights = params.get("weights") or {}
    out: dict[str, float] = {}
    ref = params.get("length_ref") or 200
    if weights.get("length", 1):
        out["length"] = min(1.0, math.log1p(stats.chars) / math.log1p(ref))
    if weights.get("script", 1):
        out["script"] = min(1.0, stats.script_ratio / (params.get("script_ref") or 1.0))
    if weights.get("clean_chars", 1):
        out["clean_chars"] = max(0.0, 1.0 - stats.ratio(stats.digits) - stats.ratio(stats.symbols))
    if weights.get("unique_lines", 1):
        out["unique_lines"] = 1.0 - stats.duplicate_lines[0]
    if weights.get("unique_ngrams", 1):
        out["unique_ngrams"] = 1.0 - stats.dup_ngram_share(3)
    if weights.get("end_punct", 1):
        lines = stats.lines
        out["end_punct"] = (sum(1 for ln in lines if ln.rstrip().endswith(_END)) / len(lines)) if lines else 0.0
    if weights.get("language", 1):
        out["language"] = stats.language_probability
    return out


@lru_cache(maxsize=4)
def load_hook(spec: str):
    module, _, attr = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"clean.quality.hook: cannot import {spec!r} ({exc}); give 'module:function'") from exc
    return fn


def score(stats: TextStats, params: dict) -> float:
    """Weighted mean of the features (see module docstring), rounded to 6 digits so output is stable."""
    weights = params.get("weights") or {}
    feats = features(stats, params)
    total = sum(weights.get(k, 1) * v for k, v in feats.items())
    wsum = sum(weights.get(k, 1) for k in feats)
    if params.get("hook"):
        value = float(load_hook(params["hook"])(stats.text, stats.language))
        hw = params["hook_weight"]
        total += hw * min(1.0, max(0.0, value))
        wsum += hw
    return round(total / wsum, 6) if wsum else 1.0
