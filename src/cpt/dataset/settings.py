"""The effective settings of one dataset stage: the `dataset:` section completed with the schema's defaults
(workflow/schemas/dataset.schema.yaml, the only place they are written), stage keys overriding dataset-wide ones."""

from __future__ import annotations

from typing import Mapping

from cpt.core.config import replay_from
from cpt.core.errors import ConfigError
from cpt.core.schema import complete


def settings_of(dataset_cfg: Mapping | None) -> dict:
    """The `dataset:` section validated against its schema, defaults filled in."""
    return complete("dataset", dataset_cfg)


def stage_settings(dataset_cfg: Mapping | None, stage: str) -> dict:
    """The effective settings of one stage (stage keys override dataset-wide ones).

    Defaults that depend on the stage's kind: SFT stages get 1 bin, `overlong: drop` and no packing unless they
    say otherwise."""
    cfg = settings_of(dataset_cfg)
    stages = cfg["stages"]
    if stage not in stages:
        raise ConfigError(f"dataset.stages.{stage}: no such stage; defined: {sorted(stages) or 'none'}")
    st = complete("dataset.stages.*", stages[stage])  # a null entry gets its defaults too
    kind = st["kind"]
    pretrain = kind == "pretrain"
    out = {
        "stage": stage,
        "kind": kind,
        "max_length": st.get("max_length", cfg["max_length"]),
        "num_bins": st.get("num_bins", cfg["num_bins"] if pretrain else 1),
        "seed": st.get("seed", cfg["seed"]),
        "overlong": st.get("overlong", cfg["overlong"] if pretrain else "drop"),
        "pack": st.get("pack", pretrain),
        "shuffle": st["shuffle"],
        "categories": None,
        "replay": None,
        "pack_window": cfg["pack_window"],
        "pack_carry": cfg["pack_carry"],
        "template": st.get("template", cfg["sft"]["template"]) if kind == "sft" else None,
    }
    cats = st.get("categories")
    if cats is not None:
        cats = {c: {} for c in cats} if isinstance(cats, list) else {c: dict(v or {}) for c, v in cats.items()}
        weighted = [c for c, v in cats.items() if "weight" in v]
        if weighted and len(weighted) != len(cats):
            raise ConfigError(f"dataset.stages.{stage}.categories: give a weight to every category or to none "
                              f"(weighted: {weighted})")
        out["categories"] = cats
    if st.get("replay") is not None:
        out["replay"] = {"from": replay_from(st), "share": float(st["replay"]["share"])}
    return out
