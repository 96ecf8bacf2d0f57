"""The clean section of the config schema agrees with cpt.clean.pipeline.DEFAULTS (the library's defaults)."""

from __future__ import annotations

from pathlib import Path

import yaml

from cpt import config as cc
from cpt.clean import languages_from_config, resolve_section
from cpt.clean.pipeline import DEFAULTS

REPO = Path(__file__).resolve().parents[2]


def schema_defaults(node):
    if node.get("type") == "object" and "properties" in node and node.get("additionalProperties") is False:
        return {k: schema_defaults(v) for k, v in node["properties"].items()}
    return node.get("default")


def test_schema_defaults_equal_library_defaults():
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "clean.schema.yaml").read_text(encoding="utf-8"))
    got = schema_defaults(schema)
    assert got.pop("enabled") is False
    assert got == DEFAULTS


def test_demo_config_validates_with_clean_enabled():
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text(encoding="utf-8"))
    cfg["clean"]["enabled"] = True
    cfg["clean"]["categories"] = {"zh_classical": {"filters": {"lang_min_prob": None}}}
    full = cc.validate(cfg)
    sec = resolve_section(full["clean"])
    assert sec["filters"]["zh"]["min_chars"] == DEFAULTS["filters"]["zh"]["min_chars"]
    langs = languages_from_config(full)
    assert set(langs) == set(full["corpus"]["categories"]) and set(langs.values()) == {"zh", "en"}
