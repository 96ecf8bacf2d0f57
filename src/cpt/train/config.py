"""The `train:` stage section as a TrainConfig: loading (JSON/YAML or an experiment config), --set overrides,
validation; keys, types and defaults are the train schema's (workflow/schemas/train.schema.yaml)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from cpt.core.errors import ConfigError
from cpt.core.schema import apply_overrides, complete, default, subschema
from cpt.core.yamlio import loads

_D = default("train.defaults")  # the schema is the one place a training key's default is written
_L = default("train.defaults.lora")  # ... and of a LoRA stage's settings (train.lora)
PLUGINS = tuple(subschema("train.stages.*.plugin")["enum"])


@dataclass(frozen=True)
class LoraSettings:
    """`train.lora`: a parameter-efficient stage (cpt.train.lora); defaults from the train schema."""

    rank: int = _L["rank"]
    alpha: float = float(_L["alpha"])  # the update is scaled by alpha / rank
    dropout: float = float(_L["dropout"])
    target_modules: tuple = tuple(_L["target_modules"])
    train_embeddings: str = _L["train_embeddings"]  # none | new_rows (rows >= base_vocab_size) | all
    base_vocab_size: int | None = _L["base_vocab_size"]  # None: config.json cpt_base_vocab_size of the model

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "LoraSettings":
        return cls(**{**d, "alpha": float(d["alpha"]), "dropout": float(d["dropout"]),
                      "target_modules": tuple(d["target_modules"])})

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["target_modules"] = list(self.target_modules)
        return d


@dataclass
class TrainConfig:
    """One stage's training settings (config key train.defaults merged with train.stages.<stage>); the defaults
    are the train schema's (workflow/schemas/train.schema.yaml)."""

    # engine + parallelism
    engine: str = _D["engine"]  # colossalai | torch (cpt.train.engine)
    plugin: str = _D["plugin"]
    tp: int = _D["tp"]
    pp: int = _D["pp"]
    sp: int = _D["sp"]
    sp_mode: str = _D["sp_mode"]
    zero_stage: int = _D["zero_stage"]  # 3d only
    pp_microbatch_size: int = _D["pp_microbatch_size"]  # 3d only, pp > 1
    # numerics
    precision: str = _D["precision"]
    # optimiser + schedule
    lr: float = _D["lr"]
    min_lr_ratio: float = _D["min_lr_ratio"]  # cosine floor = min_lr_ratio * lr
    weight_decay: float = _D["weight_decay"]
    decay_norms_and_biases: bool = _D["decay_norms_and_biases"]
    betas: tuple = tuple(_D["betas"])
    eps: float = _D["eps"]
    warmup_steps: int | None = _D["warmup_steps"]  # wins over warmup_ratio when set
    warmup_ratio: float = _D["warmup_ratio"]
    grad_clip: float = _D["grad_clip"]  # 0 = no clipping
    # batch
    micro_batch_size: int = _D["micro_batch_size"]  # sequences per device per micro step
    accumulation_steps: int = _D["accumulation_steps"]
    epochs: int = _D["epochs"]
    # stop after this many optimizer steps (the schedule still spans max_steps)
    max_steps: int | None = _D["max_steps"]
    max_length: int | None = _D["max_length"]  # None: the dataset's (its manifest.json max_length)
    # model
    grad_checkpointing: bool = _D["grad_checkpointing"]
    compile: bool = _D["compile"]  # engine torch: torch.compile each decoder layer
    flash_attention: bool = _D["flash_attention"]  # flash_attention_2 when installed (GPU), else SDPA
    freeze_non_embeds: bool = _D["freeze_non_embeds"]
    neftune_alpha: float = _D["neftune_alpha"]  # > 0 enables NEFTune (SFT)
    # data
    use_doc_lengths: bool = _D["use_doc_lengths"]  # position_ids restart at every document boundary
    # False: a token attends only within its own document
    cross_document_attention: bool = _D["cross_document_attention"]
    seed: int = _D["seed"]
    # stage chaining: "weights" = load --model weights, fresh optimizer (the default, explicit);
    # "checkpoint" = additionally load optimizer+scheduler from init_checkpoint (same plugin/world size)
    init: str = _D["init"]
    init_checkpoint: str | None = _D["init_checkpoint"]
    # checkpoints + logging
    save_interval: int = _D["save_interval"]
    keep_last: int = _D["keep_last"]
    log_interval: int = _D["log_interval"]
    progress_interval: int = _D["progress_interval"]  # a progress line (step, tokens, loss, lr, tokens/s, ETA)
    tensorboard: bool = _D["tensorboard"]  # false removes "tensorboard" from `loggers` (the older switch)
    loggers: tuple = tuple(_D["loggers"])  # cpt.train.loggers; jsonl is always written
    peak_tflops: float | None = _D["peak_tflops"]  # per device; None = look up from the GPU name, no MFU on CPU
    dist_timeout_s: int = _D["dist_timeout_s"]
    # audit: trace/rank-NNNNN.jsonl = which samples each rank trained at each step
    trace_samples: bool = _D["trace_samples"]
    # parameter-efficient stage (LoRA adapters + chosen embedding rows); None = full-parameter training
    lora: LoraSettings | None = _D["lora"]

    @property
    def active_loggers(self) -> list[str]:
        """`loggers` with jsonl always first, without tensorboard when `tensorboard` is false."""
        names = ["jsonl", *(n for n in dict.fromkeys(self.loggers) if n != "jsonl")]
        return [n for n in names if self.tensorboard or n != "tensorboard"]

    @property
    def global_batch_per_dp(self) -> int:
        return self.micro_batch_size * self.accumulation_steps

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        d["loggers"] = list(self.loggers)
        d["lora"] = self.lora.to_dict() if self.lora is not None else None
        return d


def _check(cond: bool, key: str, msg: str):
    if not cond:
        raise ConfigError(f"train.{key}: {msg}")


def from_mapping(section: Mapping[str, Any] | None) -> TrainConfig:
    """A TrainConfig from a training section: validated against the train schema (unknown keys, types and ranges
    are errors naming the key; numbers given as strings are converted), the schema's defaults filled in, then the
    rules that involve several keys (`validate`)."""
    s = complete("train.defaults", section, label="train")
    s.pop("init_from", None)
    s["betas"] = tuple(s["betas"])
    s["loggers"] = tuple(s["loggers"])
    s["lora"] = LoraSettings.from_dict(s["lora"]) if s.get("lora") is not None else None
    cfg = TrainConfig(**s)
    validate(cfg)
    return cfg


def validate(cfg: TrainConfig) -> None:
    """The rules the schema cannot express (they involve several keys)."""
    if cfg.init == "checkpoint":
        _check(bool(cfg.init_checkpoint), "init_checkpoint", "required when train.init is 'checkpoint'")
    if cfg.plugin != "3d":
        for key in ("tp", "pp", "sp"):
            _check(getattr(cfg, key) == 1, key, f"only the '3d' plugin supports {key} > 1 (plugin is {cfg.plugin!r})")
    if cfg.pp > 1:
        _check(cfg.micro_batch_size % cfg.pp_microbatch_size == 0, "micro_batch_size",
               f"must be a multiple of train.pp_microbatch_size ({cfg.pp_microbatch_size}) with pp > 1 (the pipeline "
               f"splits each micro batch into micro-batches of that size), got {cfg.micro_batch_size}")
        _check(cfg.micro_batch_size // cfg.pp_microbatch_size >= cfg.pp, "micro_batch_size",
               f"with pp={cfg.pp} a micro batch must hold at least pp pipeline micro-batches (1F1B schedule): "
               f"micro_batch_size >= pp x pp_microbatch_size = {cfg.pp * cfg.pp_microbatch_size}, got "
               f"{cfg.micro_batch_size}")
    if cfg.lora is not None:
        _check(not cfg.freeze_non_embeds, "freeze_non_embeds",
               "cannot be combined with train.lora (a LoRA stage trains the adapters; choose the embeddings it also "
               "trains with train.lora.train_embeddings)")
        _check(cfg.init != "checkpoint", "init",
               "'checkpoint' cannot be combined with train.lora (the earlier stage's optimizer state covers other "
               "parameters); use init: weights")
    if cfg.engine == "torch":
        _check(cfg.lora is None, "lora", "LoRA stages need train.engine 'colossalai' (booster.enable_lora); the torch "
               "engine trains full parameters (or only the embeddings with train.freeze_non_embeds)")
        _check(cfg.precision != "fp16", "precision", "fp16 needs train.engine 'colossalai' (loss scaling); the torch "
               "engine runs bf16 or fp32")
    else:
        _check(not cfg.compile, "compile", "torch.compile applies to train.engine 'torch' only")
    if not cfg.cross_document_attention:
        _check(cfg.use_doc_lengths, "cross_document_attention",
               "false needs train.use_doc_lengths: true (document boundaries come from doc_lengths)")


def load_config(path: str | Path | None, overrides: Sequence[str] = (), stage: str | None = None) -> TrainConfig:
    """The TrainConfig of a JSON/YAML file holding a stage's training section (what the workflow writes as
    train_config.json), or of an experiment config with `stage`; `overrides`: KEY=VALUE strings (--set), parsed
    with the schema's types."""
    section: dict = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{p}: training config file not found")
        text = p.read_text(encoding="utf-8")
        try:
            section = json.loads(text) if p.suffix == ".json" else loads(text, str(p))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{p}: not valid JSON/YAML: {exc}") from exc
        if section is None:
            section = {}
        if not isinstance(section, dict):
            raise ConfigError(f"{p}: expected a mapping of training keys, got {type(section).__name__}")
        if "experiment" in section:  # a whole experiment config: the stage's section, as the workflow merges it
            from cpt.core.config import load, stage_names, stage_section

            config = load(p)
            if stage not in config["train"]["stages"]:
                raise ConfigError(f"{p}: give --stage, one of {', '.join(stage_names(config))}")
            section = stage_section(config, stage)
            section.pop("name")
        elif stage is not None:
            raise ConfigError(f"{p}: --stage needs an experiment config (this file holds one training section)")
    section = apply_overrides(section, overrides, prefix="train", schema_key="train.defaults")
    return from_mapping(section)


def with_dataset_max_length(cfg: TrainConfig, manifest: Mapping[str, Any], dataset_dir) -> TrainConfig:
    """train.max_length follows the dataset: null takes manifest.json's max_length (dataset.max_length when the
    stage was built); a value that differs from it is an error naming both keys."""
    built = manifest.get("max_length")
    longest = manifest.get("longest")  # data prepared elsewhere (cpt.train.reference_data): its longest sequence
    if built is None and longest is not None:
        if cfg.max_length is not None and cfg.max_length < int(longest):
            raise ConfigError(f"train.max_length is {cfg.max_length} but {dataset_dir} holds sequences of "
                              f"{longest} tokens; raise train.max_length or leave it unset (it follows the data)")
        return cfg if cfg.max_length is not None else dataclasses.replace(cfg, max_length=int(longest))
    if cfg.max_length is None:
        return dataclasses.replace(cfg, max_length=int(built)) if built is not None else cfg
    if built is not None and int(built) != cfg.max_length:
        raise ConfigError(f"train.max_length is {cfg.max_length} but {dataset_dir}/manifest.json was built with "
                          f"dataset.max_length {built}; leave train.max_length unset (it follows the dataset) or "
                          f"set both to the same value")
    return cfg
