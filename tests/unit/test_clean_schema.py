"""The clean section's defaults come from its schema (workflow/schemas/clean.schema.yaml) alone."""

from __future__ import annotations

from pathlib import Path

import yaml

from cpt.artifacts.corpus import category_languages
from cpt.clean import resolve_section
from cpt.core import schema as sc
from cpt.workflow import experiment

REPO = Path(__file__).resolve().parents[2]


def test_resolved_section_is_the_schema_defaults():
    sec = resolve_section({})
    assert sec == sc.default("clean")
    assert sec["filters"]["zh"]["min_chars"] == 2 and sec["filters"]["en"]["min_chars"] == 10
    assert sec["dedup"] == {"exact": True, "near": True, "scope": "global", "threshold": 0.7, "num_perm": 128,
                            "bands": None, "rows": None, "ngram": {"zh": 5, "en": 3}}
    # a given n-gram table replaces the default one; other keys are filled around what is given
    sec = resolve_section({"filters": {"en": {"top_ngram": {"2": 0.5}, "min_chars": 3}}})
    assert sec["filters"]["en"]["top_ngram"] == {"2": 0.5}
    assert sec["filters"]["en"]["min_chars"] == 3 and sec["filters"]["en"]["max_chars"] == 500000


def test_demo_config_validates_with_clean_enabled():
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text(encoding="utf-8"))
    cfg["clean"]["enabled"] = True
    cfg["clean"]["categories"] = {"zh_classical": {"filters": {"lang_min_prob": None}}}
    full = experiment.validate(cfg)
    sec = resolve_section(full["clean"])
    assert sec == full["clean"]  # what the workflow validated is what the library runs with
    assert sec["categories"]["zh_classical"] == {"filters": {"lang_min_prob": None}}  # overrides stay overrides
    langs = category_languages(full)
    assert set(langs) == set(full["corpus"]["categories"]) and set(langs.values()) == {"zh", "en"}
