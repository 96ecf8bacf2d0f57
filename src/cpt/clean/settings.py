"""The `clean:` section completed with the schema's defaults (workflow/schemas/clean.schema.yaml, the only place
they are written) and the effective parameters of one category (its language's defaults + its overrides)."""

from __future__ import annotations

import copy
from typing import Mapping

from cpt.core.errors import ConfigError
from cpt.core.schema import complete

LANGUAGES = ("zh", "en")


def deep_merge(base: Mapping, over: Mapping | None) -> dict:
    out = copy.deepcopy(dict(base))
    for k, v in (over or {}).items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) and not _is_ngram_table(k):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _is_ngram_table(key: str) -> bool:
    # an n-gram threshold table given in config replaces the default table (so n values can be removed)
    return key in ("top_ngram", "dup_ngram", "boilerplate_markers")


def resolve_section(section: Mapping | None) -> dict:
    """The `clean` config section validated against its schema, defaults filled in, and its LSH settings usable."""
    sec = complete("clean", section)
    d = sec["dedup"]
    if d["near"]:
        from datasketch import MinHashLSH

        try:
            MinHashLSH(threshold=float(d["threshold"]), num_perm=int(d["num_perm"]),
                       params=(d["bands"], d["rows"]) if d["bands"] and d["rows"] else None)
        except ValueError as exc:
            raise ConfigError(f"clean.dedup: threshold {d['threshold']} / num_perm {d['num_perm']} / bands "
                              f"{d['bands']} / rows {d['rows']} give no usable LSH ({exc}); lower the threshold "
                              f"or raise num_perm") from None
    return sec


def category_params(sec: dict, category: str, language: str) -> dict:
    """Effective normalize/filters/quality parameters of one category (language defaults + overrides)."""
    if language not in LANGUAGES:
        raise ConfigError(f"language of category {category!r} is {language!r}; use one of {LANGUAGES}")
    over = sec["categories"].get(category) or {}
    return {
        "language": language,
        "normalize": deep_merge(sec["normalize"], over.get("normalize")),
        "filters": deep_merge(sec["filters"][language], over.get("filters")),
        "quality": deep_merge(sec["quality"][language], over.get("quality")),
        "ngram": int(sec["dedup"]["ngram"][language]),
        "num_perm": int(sec["dedup"]["num_perm"]),
        "seed": int(sec["seed"]),
        "near": bool(sec["dedup"]["near"]),
    }


def category_language(sec: dict, category: str, languages: Mapping[str, str] | None) -> str:
    lang = (languages or {}).get(category) or (sec["categories"].get(category) or {}).get("language") \
        or sec["languages"].get(category)
    if not lang:
        raise ConfigError(f"no language for category {category!r}: set corpus.categories.{category}.language "
                          f"(or clean.languages.{category}) to zh or en")
    return lang
