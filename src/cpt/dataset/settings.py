"""The `dataset:` section's defaults and the effective settings of one stage (stage keys override dataset-wide ones)."""

from __future__ import annotations

from cpt.errors import ConfigError
from cpt.packing import OVERLONG_MODES, on_error_of

DEFAULTS = {
    "max_length": 4096,
    "num_bins": 10,
    "seed": 42,
    "overlong": "split",
    "bad_records": "error",
    "num_workers": 0,            # 0: the tokenizer's own threads in this process; N: N worker processes
    "block_lines": 2000,
    "pack_window": 8192,
    "pack_carry": 64,
    "sft": {"template": "llama2"},
}


def settings_of(dataset_cfg: dict | None) -> dict:
    cfg = {**DEFAULTS, **(dataset_cfg or {})}
    cfg["sft"] = {**DEFAULTS["sft"], **((dataset_cfg or {}).get("sft") or {})}
    if cfg["overlong"] not in OVERLONG_MODES:
        raise ConfigError(f"dataset.overlong: {cfg['overlong']!r} is not one of {OVERLONG_MODES}")
    on_error_of(cfg["bad_records"])   # ConfigError naming dataset.bad_records
    for key in ("max_length", "num_bins"):
        if not isinstance(cfg[key], int) or cfg[key] < 1:
            raise ConfigError(f"dataset.{key}: must be a positive integer, got {cfg[key]!r}")
    return cfg


def stage_settings(dataset_cfg: dict, stage: str) -> dict:
    """The effective settings of one stage (stage keys override dataset-wide ones)."""
    cfg = settings_of(dataset_cfg)
    stages = cfg.get("stages") or {}
    if stage not in stages:
        raise ConfigError(f"dataset.stages.{stage}: no such stage; defined: {sorted(stages) or 'none'}")
    st = dict(stages[stage] or {})
    kind = st.get("kind", "pretrain")
    if kind not in ("pretrain", "sft"):
        raise ConfigError(f"dataset.stages.{stage}.kind: {kind!r} is not pretrain or sft")
    out = {
        "stage": stage,
        "kind": kind,
        "max_length": int(st.get("max_length", cfg["max_length"])),
        "num_bins": int(st.get("num_bins", cfg["num_bins"] if kind == "pretrain" else 1)),
        "seed": int(st.get("seed", cfg["seed"])),
        "overlong": st.get("overlong", cfg["overlong"] if kind == "pretrain" else "drop"),
        "pack": bool(st.get("pack", kind == "pretrain")),
        "shuffle": bool(st.get("shuffle", True)),
        "categories": st.get("categories"),
        "replay": st.get("replay"),
        "pack_window": int(cfg["pack_window"]),
        "pack_carry": int(cfg["pack_carry"]),
        "template": (st.get("template") or cfg["sft"]["template"]) if kind == "sft" else None,
    }
    if out["overlong"] not in OVERLONG_MODES:
        raise ConfigError(f"dataset.stages.{stage}.overlong: {out['overlong']!r} is not one of {OVERLONG_MODES}")
    cats = out["categories"]
    if cats is not None:
        if isinstance(cats, list):
            cats = {c: {} for c in cats}
        if not isinstance(cats, dict):
            raise ConfigError(f"dataset.stages.{stage}.categories: a mapping category -> {{max_tokens?, weight?}}")
        cats = {c: dict(v or {}) for c, v in cats.items()}
        for c, v in cats.items():
            bad = set(v) - {"max_tokens", "weight"}
            if bad:
                raise ConfigError(f"dataset.stages.{stage}.categories.{c}: unknown keys {sorted(bad)} "
                                  f"(allowed: max_tokens, weight)")
            if "max_tokens" in v and (not isinstance(v["max_tokens"], int) or v["max_tokens"] < 0):
                raise ConfigError(f"dataset.stages.{stage}.categories.{c}.max_tokens: a non-negative integer")
            if "weight" in v and (not isinstance(v["weight"], (int, float)) or v["weight"] <= 0):
                raise ConfigError(f"dataset.stages.{stage}.categories.{c}.weight: a positive number")
        weighted = [c for c, v in cats.items() if "weight" in v]
        if weighted and len(weighted) != len(cats):
            raise ConfigError(f"dataset.stages.{stage}.categories: give a weight to every category or to none "
                              f"(weighted: {weighted})")
        out["categories"] = cats
    rep = out["replay"]
    if rep is not None:
        if not isinstance(rep, dict) or "from" not in rep or "share" not in rep:
            raise ConfigError(f"dataset.stages.{stage}.replay: expected {{from: [stage, ...], share: 0..1}}")
        frm = [rep["from"]] if isinstance(rep["from"], str) else list(rep["from"])
        share = rep["share"]
        if not isinstance(share, (int, float)) or not 0 <= share < 1:
            raise ConfigError(f"dataset.stages.{stage}.replay.share: a number in [0, 1), got {share!r}")
        for f in frm:
            if f not in stages:
                raise ConfigError(f"dataset.stages.{stage}.replay.from: {f!r} is not a stage")
            if f == stage:
                raise ConfigError(f"dataset.stages.{stage}.replay.from: a stage cannot replay itself")
        out["replay"] = {"from": frm, "share": float(share)}
    return out

