"""The `train:` stage section: defaults, loading (JSON/YAML), key=value overrides, validation."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import yaml

from cpt.errors import ConfigError

PLUGINS = ("ddp", "zero2", "zero2_cpu", "gemini", "gemini_auto", "3d")
PRECISIONS = ("bf16", "fp16", "fp32")
SP_MODES = ("split_gather", "ring", "all_to_all", "ring_attn")
INIT_MODES = ("weights", "checkpoint")
TRAIN_EMBEDDINGS = ("none", "new_rows", "all")
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class LoraSettings:
    """`train.lora`: a parameter-efficient stage (cpt.train.lora). Defaults = workflow/schemas/train.schema.yaml."""

    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.05
    target_modules: tuple = LORA_TARGETS
    train_embeddings: str = "none"   # none | new_rows (rows >= base_vocab_size) | all (embed_tokens + lm_head)
    base_vocab_size: int | None = None  # first new row; None = config.json cpt_base_vocab_size of the model

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["target_modules"] = list(self.target_modules)
        return d


_LORA_FIELDS = {f.name: f for f in fields(LoraSettings)}


def lora_from_mapping(section: Any) -> LoraSettings | None:
    """null/absent = no LoRA; a mapping = LoRA with the schema's defaults for keys not written."""
    if section is None or isinstance(section, LoraSettings):
        return section
    if not isinstance(section, Mapping):
        raise ConfigError(f"train.lora: expected a mapping of LoRA settings or null, got {section!r}")
    unknown = sorted(set(section) - set(_LORA_FIELDS))
    if unknown:
        raise ConfigError(f"train.lora: unknown key(s) {unknown}; known keys: {sorted(_LORA_FIELDS)}")
    kw = dict(section)
    defaults = LoraSettings()
    for key in ("rank", "base_vocab_size"):
        if key in kw and kw[key] is not None:
            v = kw[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v:
                raise ConfigError(f"train.lora.{key}: expected an integer, got {v!r}")
            kw[key] = int(v)
    for key in ("alpha", "dropout"):
        if key in kw:
            v = kw[key]
            if isinstance(v, str):
                try:
                    v = float(v)
                except ValueError:
                    pass
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ConfigError(f"train.lora.{key}: expected a number, got {v!r}")
            kw[key] = float(v)
    if "target_modules" in kw:
        t = kw["target_modules"]
        if isinstance(t, str):
            t = [t]
        if not isinstance(t, (list, tuple)) or not t or not all(isinstance(x, str) and x for x in t):
            raise ConfigError(f"train.lora.target_modules: expected a non-empty list of module names, got {t!r}")
        kw["target_modules"] = tuple(t)
    lora = dataclasses.replace(defaults, **kw)
    _check(lora.rank >= 1, "lora.rank", f"must be >= 1, got {lora.rank}")
    _check(lora.alpha > 0, "lora.alpha", f"must be > 0, got {lora.alpha}")
    _check(0 <= lora.dropout < 1, "lora.dropout", f"must be in [0, 1), got {lora.dropout}")
    _check(lora.train_embeddings in TRAIN_EMBEDDINGS, "lora.train_embeddings",
           f"{lora.train_embeddings!r} is not one of {TRAIN_EMBEDDINGS}")
    _check(lora.base_vocab_size is None or lora.base_vocab_size >= 1, "lora.base_vocab_size", "must be >= 1 or null")
    _check(len(set(lora.target_modules)) == len(lora.target_modules), "lora.target_modules",
           f"names must be unique, got {list(lora.target_modules)}")
    return lora


@dataclass
class TrainConfig:
    # parallelism
    plugin: str = "zero2"
    tp: int = 1
    pp: int = 1
    sp: int = 1
    sp_mode: str = "split_gather"
    zero_stage: int = 0            # 3d only
    pp_microbatch_size: int = 1    # 3d only, pp > 1
    # numerics
    precision: str = "bf16"
    # optimiser + schedule
    lr: float = 1e-4
    min_lr_ratio: float = 0.1      # cosine floor = min_lr_ratio * lr
    weight_decay: float = 0.01
    decay_norms_and_biases: bool = False
    betas: tuple = (0.9, 0.95)
    eps: float = 1e-8
    warmup_steps: int | None = 100  # wins over warmup_ratio when set
    warmup_ratio: float = 0.025
    grad_clip: float = 1.0         # 0 = no clipping
    # batch
    micro_batch_size: int = 8      # sequences per device per micro step
    accumulation_steps: int = 1
    epochs: int = 1
    max_steps: int | None = None   # stop after this many optimizer steps (the schedule still spans max_steps)
    max_length: int = 4096
    # model
    grad_checkpointing: bool = False
    flash_attention: bool = True   # flash_attention_2 when installed (GPU), else SDPA
    freeze_non_embeds: bool = False
    neftune_alpha: float = 0.0     # > 0 enables NEFTune (SFT)
    # data
    use_doc_lengths: bool = False  # position_ids restart at every document boundary
    cross_document_attention: bool = True  # False: a token attends only within its own document
    seed: int = 42
    # stage chaining: "weights" = load --model weights, fresh optimizer (the default, explicit);
    # "checkpoint" = additionally load optimizer+scheduler from init_checkpoint (same plugin/world size)
    init: str = "weights"
    init_checkpoint: str | None = None
    # checkpoints + logging
    save_interval: int = 400
    keep_last: int = 2
    log_interval: int = 1
    tensorboard: bool = True
    peak_tflops: float | None = None  # per device; None = look up from the GPU name, no MFU on CPU
    dist_timeout_s: int = 1800
    trace_samples: bool = False       # audit: trace/rank-NNNNN.jsonl = which samples each rank trained at each step
    # parameter-efficient stage: None = full-parameter training (see LoraSettings, cpt.train.lora)
    lora: LoraSettings | None = None

    @property
    def global_batch_per_dp(self) -> int:
        return self.micro_batch_size * self.accumulation_steps

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        d["lora"] = self.lora.to_dict() if self.lora is not None else None
        return d


_FIELDS = {f.name: f for f in fields(TrainConfig)}


def _check(cond: bool, key: str, msg: str):
    if not cond:
        raise ConfigError(f"train.{key}: {msg}")


def _coerce(key: str, value: Any, default: Any) -> Any:
    if key == "betas":
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise ConfigError(f"train.betas: expected a list of two floats, got {value!r}")
        return tuple(float(v) for v in value)
    if key == "lora":
        return lora_from_mapping(value)
    if value is None:
        return None
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"train.{key}: expected true/false, got {value!r}")
        return value
    if isinstance(default, int) and not isinstance(default, bool) or key in ("warmup_steps", "max_steps"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise ConfigError(f"train.{key}: expected an integer, got {value!r}")
        return int(value)
    if isinstance(default, float) or key == "peak_tflops":
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"train.{key}: expected a number, got {value!r}")
        return float(value)
    return value


def from_mapping(section: Mapping[str, Any] | None) -> TrainConfig:
    """Build and validate a TrainConfig; unknown keys are errors (typos must not pass silently)."""
    section = dict(section or {})
    unknown = sorted(set(section) - set(_FIELDS))
    if unknown:
        raise ConfigError(f"train: unknown key(s) {unknown}; known keys: {sorted(_FIELDS)}")
    defaults = TrainConfig()
    kwargs = {k: _coerce(k, v, getattr(defaults, k)) for k, v in section.items()}
    cfg = TrainConfig(**kwargs)
    validate(cfg)
    return cfg


def validate(cfg: TrainConfig) -> None:
    _check(cfg.plugin in PLUGINS, "plugin", f"{cfg.plugin!r} is not one of {PLUGINS}")
    _check(cfg.precision in PRECISIONS, "precision", f"{cfg.precision!r} is not one of {PRECISIONS}")
    _check(cfg.sp_mode in SP_MODES, "sp_mode", f"{cfg.sp_mode!r} is not one of {SP_MODES}")
    _check(cfg.init in INIT_MODES, "init", f"{cfg.init!r} is not one of {INIT_MODES}")
    if cfg.init == "checkpoint":
        _check(bool(cfg.init_checkpoint), "init_checkpoint", "required when train.init is 'checkpoint'")
    for key in ("tp", "pp", "sp", "pp_microbatch_size", "micro_batch_size", "accumulation_steps", "epochs",
                "save_interval", "keep_last", "log_interval", "max_length"):
        _check(getattr(cfg, key) >= 1, key, f"must be >= 1, got {getattr(cfg, key)}")
    _check(cfg.zero_stage in (0, 1, 2), "zero_stage", f"must be 0, 1 or 2, got {cfg.zero_stage}")
    _check(cfg.lr > 0, "lr", f"must be > 0, got {cfg.lr}")
    _check(0 <= cfg.min_lr_ratio <= 1, "min_lr_ratio", f"must be in [0, 1], got {cfg.min_lr_ratio}")
    _check(cfg.weight_decay >= 0, "weight_decay", "must be >= 0")
    _check(cfg.grad_clip >= 0, "grad_clip", "must be >= 0 (0 disables clipping)")
    _check(cfg.neftune_alpha >= 0, "neftune_alpha", "must be >= 0 (0 disables NEFTune)")
    _check(cfg.warmup_steps is None or cfg.warmup_steps >= 0, "warmup_steps", "must be >= 0 or null")
    _check(0 <= cfg.warmup_ratio < 1, "warmup_ratio", "must be in [0, 1)")
    _check(cfg.max_steps is None or cfg.max_steps >= 1, "max_steps", "must be >= 1 or null")
    if cfg.plugin != "3d":
        for key in ("tp", "pp", "sp"):
            _check(getattr(cfg, key) == 1, key, f"only the '3d' plugin supports {key} > 1 (plugin is {cfg.plugin!r})")
    if cfg.lora is not None:
        _check(not cfg.freeze_non_embeds, "freeze_non_embeds",
               "cannot be combined with train.lora (a LoRA stage trains the adapters; choose the embeddings it also "
               "trains with train.lora.train_embeddings)")
        _check(cfg.init != "checkpoint", "init",
               "'checkpoint' cannot be combined with train.lora (the earlier stage's optimizer state covers other "
               "parameters); use init: weights")
    if not cfg.cross_document_attention:
        _check(cfg.use_doc_lengths, "cross_document_attention",
               "false needs train.use_doc_lengths: true (document boundaries come from doc_lengths)")


def load_config(path: str | Path | None, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """Read a JSON/YAML file holding the stage's training section, apply overrides, validate."""
    section: dict = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{p}: training config file not found")
        text = p.read_text(encoding="utf-8")
        try:
            section = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise ConfigError(f"{p}: not valid JSON/YAML: {exc}") from exc
        if section is None:
            section = {}
        if not isinstance(section, dict):
            raise ConfigError(f"{p}: expected a mapping of training keys, got {type(section).__name__}")
    section.update(overrides or {})
    return from_mapping(section)


def parse_overrides(items) -> dict:
    """['lr=3e-4', 'plugin=ddp'] -> {'lr': 0.0003, 'plugin': 'ddp'} (values parsed as YAML scalars)."""
    out = {}
    for item in items or ():
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value")
        key, value = item.split("=", 1)
        key = key.strip()
        if key.startswith("train."):
            key = key[len("train."):]
        if key.startswith("lora."):  # lora.rank=16: one key of the nested section
            sub = out.get("lora")
            out["lora"] = {**(sub if isinstance(sub, dict) else {}), key[len("lora."):]: yaml.safe_load(value)}
            continue
        out[key] = yaml.safe_load(value)
    return out
