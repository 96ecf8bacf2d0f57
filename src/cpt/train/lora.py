"""Parameter-efficient stages: LoRA adapters (peft, through ColossalAI's `booster.enable_lora`) on a frozen model,
with the embedding rows `train.lora.train_embeddings` names trainable, and a merged plain Hugging Face export.

- `none`: only the adapters train. `all`: embed_tokens and lm_head train too (all rows).
- `new_rows`: only rows >= the base vocabulary train. The embedding and the LM head are split into two parameters
  (`old_rows`, frozen; `new_rows`, trainable) whose lookups / logits equal the unsplit module's bit for bit. The old
  rows are not optimizer parameters at all, so neither a gradient nor AdamW's decoupled weight decay nor optimizer
  state can move them (a gradient mask alone would not stop weight decay), and the optimizer holds state for the
  new rows only. Tied embeddings stay tied (the LM head shares the split embedding's two parameters).
- Export (`LoraStage.export`): `final/` = the merged model (W + B A alpha/r per adapted layer, the split rows joined)
  as a plain HF directory that transformers loads without peft; `adapter/` beside it = the peft adapter
  (`PeftModel.from_pretrained(<stage's input model>, adapter/)`), holding the trained embedding matrices too when
  train_embeddings is not none (peft loads non-adapter keys of an adapter file into the base model).

Checkpoints and resume go through the Booster like a full-parameter stage (the adapters, the split rows and the
frozen weights are all in the model checkpoint; the optimizer checkpoint holds only what trains).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from cpt.artifacts.stagedir import StageDir
from cpt.core.errors import TrainError
from cpt.model.weights import BASE_VOCAB_KEY
from cpt.train.config import LoraSettings, TrainConfig
from cpt.train.new_rows import NewRowsEmbedding, NewRowsLinear, TiedHead, module_name, set_module, split_new_rows, tied

ADAPTER_DIR = "adapter"
# plugins whose LoRA path is tested end to end here (every rank holds the full adapted model, so rank 0 merges)
LORA_PLUGINS = ("ddp", "zero2", "zero2_cpu")
SAFETENSORS_METADATA = {"format": "pt"}


# --------------------------------------------------------------------------------------- settings -> peft
def check(cfg: TrainConfig, plugin_traits) -> None:
    """Refuse plugins without a (tested) LoRA path, naming the key to change."""
    if not plugin_traits.lora:
        raise TrainError(f"train.lora: plugin {cfg.plugin!r} has no LoRA support in ColossalAI (booster.enable_lora); "
                         f"use plugin ddp or zero2")
    if cfg.plugin not in LORA_PLUGINS:
        raise TrainError(f"train.lora with plugin {cfg.plugin!r}: not supported by this trainer yet (the merged export "
                         f"of tensor/pipeline-sharded adapters is not implemented); use plugin ddp or zero2")


def resolve_base_vocab(settings: LoraSettings, hf_config, vocab_rows: int, model_dir) -> int | None:
    """The first trainable row for new_rows: train.lora.base_vocab_size, else config.json's cpt_base_vocab_size."""
    if settings.train_embeddings != "new_rows":
        return None
    n = settings.base_vocab_size
    if n is None:
        n = getattr(hf_config, BASE_VOCAB_KEY, None)
    if n is None:
        raise TrainError(f"train.lora.train_embeddings=new_rows needs the base vocabulary size: {model_dir}/config.json "
                         f"has no {BASE_VOCAB_KEY} (a model from `model init` and every stage after it has it); set "
                         f"train.lora.base_vocab_size, or use train_embeddings none or all")
    n = int(n)
    if not 0 < n < vocab_rows:
        raise TrainError(f"train.lora.base_vocab_size={n}: the model has {vocab_rows} embedding rows, so there are no "
                         f"new rows to train (must be in 1..{vocab_rows - 1}); use train_embeddings none or all")
    return n


def peft_config(settings: LoraSettings):
    from peft import LoraConfig

    return LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                      target_modules=list(settings.target_modules), bias="none", task_type="CAUSAL_LM")


@dataclass
class LoraStage:
    """What the loop keeps of a LoRA stage: the settings, the split (new_rows) and the facts for run.json."""

    settings: LoraSettings
    base_vocab: int | None
    split: dict | None
    embedding_names: dict  # {"embedding": "model.embed_tokens", "head": "lm_head", "tied": bool}

    def facts(self) -> dict:
        return {**self.settings.to_dict(), "base_vocab_size": self.base_vocab,
                "tied_embeddings": self.embedding_names["tied"]}

    def export(self, model, hf_config, src_model_dir, output: Path, dtype: torch.dtype) -> Path:
        """Collective: <output>/adapter (peft) then <output>/final (merged plain HF); returns final."""
        peft_model = model.unwrap(unwrap_peft=False) if hasattr(model, "unwrap") else model
        if hasattr(model, "_force_wait_all_gather"):
            model._force_wait_all_gather()
        final = StageDir(output).final
        if _rank() == 0:
            save_adapter(peft_model, self, Path(output) / ADAPTER_DIR)
            export_merged(peft_model, hf_config, src_model_dir, final, dtype)
        _barrier()
        return final


@contextlib.contextmanager
def adapter_init_rng(seed: int):
    """The random stream peft draws the adapters' A matrices from: train.seed itself, the same on every rank and
    at every world size, and the process's own streams untouched outside. The loop seeds each rank differently
    (dropout, NEFTune); adapters drawn from those streams would differ per rank. DDP hides that by broadcasting
    rank 0's parameters, ZeRO does not (each rank keeps the master shard of its own draw), so zero2 would train a
    patchwork of the ranks' adapters and part from ddp (tests/distributed/test_lora_torchrun.py)."""
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def enable(booster, model: nn.Module, cfg: TrainConfig, plugin_traits, hf_config, model_dir) -> tuple:
    """Wrap `model` for a LoRA stage (before the optimizer is built and the model boosted); returns
    (peft model, LoraStage)."""
    import peft

    settings = cfg.lora
    check(cfg, plugin_traits)
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    names = {"embedding": module_name(model, emb), "head": module_name(model, head) if head is not None else None,
             "tied": tied(model)}
    banned = {names["embedding"].rpartition(".")[2], (names["head"] or "").rpartition(".")[2]} - {""}
    clash = sorted(banned & set(settings.target_modules))
    if clash:
        raise TrainError(f"train.lora.target_modules: {clash} are the embeddings / LM head; train them with "
                         f"train.lora.train_embeddings (new_rows or all) instead of adapters")
    n_base = resolve_base_vocab(settings, hf_config, emb.num_embeddings, model_dir)
    split = split_new_rows(model, n_base) if n_base is not None else None
    if split is None and names["tied"]:
        set_module(model, names["head"], TiedHead(emb))
    try:
        with adapter_init_rng(cfg.seed):
            peft_model = booster.enable_lora(model, lora_config=peft_config(settings))
    except ValueError as exc:  # peft: "Target modules {...} not found in the base model"
        raise TrainError(f"train.lora.target_modules {list(settings.target_modules)}: {exc}") from None
    base = peft_model.get_base_model()
    # peft froze everything but the adapters; make the configured embedding rows trainable again
    if settings.train_embeddings == "new_rows":
        for mod in (base.get_input_embeddings(), base.get_output_embeddings()):
            if mod is not None:
                mod.new_rows.requires_grad_(True)
    elif settings.train_embeddings == "all":
        for mod in (base.get_input_embeddings(), base.get_output_embeddings()):
            if mod is not None:
                mod.weight.requires_grad_(True)
    assert isinstance(peft_model, peft.PeftModel)
    return peft_model, LoraStage(settings, n_base, split, names)


# --------------------------------------------------------------------------------------- merge + export
def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def merged_state_dict(peft_model, drop_tied_head: bool | None = None) -> dict[str, torch.Tensor]:
    """The plain HF state dict of the adapted model: W + delta (peft's get_delta_weight: B A x alpha/r) for every
    adapted layer, the split embedding rows joined, adapter tensors dropped; the tied LM head is left out."""
    from peft.tuners.lora import LoraLayer

    base = peft_model.get_base_model()
    adapter = peft_model.active_adapter
    out: dict[str, torch.Tensor] = {}
    handled: list[str] = []
    with torch.no_grad():
        for name, module in base.named_modules():
            if isinstance(module, LoraLayer):
                if module.merged:
                    raise TrainError(f"{name}: adapter already merged into the weights")
                layer = module.get_base_layer()
                w = layer.weight.detach()
                if adapter in module.lora_A or adapter in getattr(module, "lora_embedding_A", {}):
                    w = w + module.get_delta_weight(adapter).to(w.dtype)
                out[f"{name}.weight"] = w
                if getattr(layer, "bias", None) is not None:
                    out[f"{name}.bias"] = layer.bias.detach()
                handled.append(name + ".")
            elif isinstance(module, (NewRowsEmbedding, NewRowsLinear, TiedHead)):
                out[f"{name}.weight"] = module.weight.detach()
                if getattr(module, "bias", None) is not None:
                    out[f"{name}.bias"] = module.bias.detach()
                handled.append(name + ".")
        for key, value in base.state_dict().items():
            if any(key.startswith(h) for h in handled):
                continue
            out[key] = value.detach()
    is_tied = bool(getattr(base.config, "tie_word_embeddings", False)) if drop_tied_head is None else drop_tied_head
    if is_tied:
        head = base.get_output_embeddings()
        emb = base.get_input_embeddings()
        head_key = f"{module_name(base, head)}.weight" if head is not None else None
        emb_key = f"{module_name(base, emb)}.weight"
        if head_key in out:
            if not torch.equal(out[head_key], out[emb_key]):
                raise TrainError("tie_word_embeddings is true but the trained LM head differs from the embeddings")
            del out[head_key]
    return out


def export_merged(peft_model, hf_config, src_model_dir, out_dir: Path, dtype: torch.dtype) -> Path:
    """Write the merged model as a plain HF directory (safetensors shards, config, tokenizer files) atomically."""
    from huggingface_hub import save_torch_state_dict

    from cpt.tokenizer.hf import TOKENIZER_FILES

    out = Path(out_dir)
    tmp = out.with_name(f".tmp-{out.name}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    state = {k: v.contiguous() for k, v in merged_state_dict(peft_model).items()}
    save_torch_state_dict(state, tmp, max_shard_size="4GB", metadata=SAFETENSORS_METADATA)
    cfg = hf_config.__class__.from_dict(hf_config.to_dict())
    cfg.torch_dtype = dtype
    cfg.use_cache = True
    cfg.save_pretrained(tmp)
    src = Path(src_model_dir)
    for name in ("generation_config.json", *TOKENIZER_FILES):
        if (src / name).is_file():
            shutil.copy2(src / name, tmp / name)
    if out.exists():
        shutil.rmtree(out)
    os.rename(tmp, out)
    return out


def save_adapter(peft_model, stage: LoraStage, out_dir: Path) -> Path:
    """The peft adapter directory; with trained embeddings, their full matrices are added to the adapter file
    under the base model's names (peft loads such keys into the base model)."""
    from safetensors.torch import load_file, save_file

    out = Path(out_dir)
    tmp = out.with_name(f".tmp-{out.name}")
    if tmp.exists():
        shutil.rmtree(tmp)
    peft_model.save_pretrained(str(tmp), safe_serialization=True, save_embedding_layers=False)
    extra = {}
    if stage.settings.train_embeddings != "none":
        base = peft_model.get_base_model()
        targets = [stage.embedding_names["embedding"]]
        if stage.embedding_names.get("head") and not stage.embedding_names["tied"]:
            targets.append(stage.embedding_names["head"])
        for name in targets:
            extra[f"base_model.model.{name}.weight"] = base.get_submodule(name).weight.detach().contiguous().cpu()
        f = tmp / "adapter_model.safetensors"
        tensors = {**load_file(f), **extra}
        save_file(tensors, f, metadata=SAFETENSORS_METADATA)
    facts = {"train_embeddings": stage.settings.train_embeddings, "base_vocab_size": stage.base_vocab,
             "embedding_keys": sorted(extra), "tied_embeddings": stage.embedding_names["tied"],
             "load": "PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(<the stage's input model>), "
                     "<this dir>); or use ../final (merged, no peft needed)"}
    (tmp / "cpt_lora.json").write_text(json.dumps(facts, indent=2) + "\n", encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    os.rename(tmp, out)
    return out


# --------------------------------------------------------------------------------------- memory facts
def parameter_counts(model: nn.Module) -> dict:
    """Parameters of this rank's model copy: total, trainable, and the trainable ones by kind."""
    inner = model.unwrap(unwrap_peft=False) if hasattr(model, "unwrap") else model
    total = trainable = lora = emb = 0
    for name, p in inner.named_parameters():
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
            if "lora_" in name:
                lora += p.numel()
            elif "embed" in name or "lm_head" in name or "new_rows" in name:
                emb += p.numel()
    return {"params_total": total, "params_trainable": trainable, "params_trainable_adapters": lora,
            "params_trainable_embeddings": emb}


def optimizer_state_bytes(optimizer) -> int:
    """Bytes of this rank's optimizer state tensors (AdamW moments; under ZeRO this rank's shard)."""
    inner = optimizer.unwrap() if hasattr(optimizer, "unwrap") else optimizer
    n = 0
    for state in inner.state.values():
        for v in state.values():
            if torch.is_tensor(v):
                n += v.numel() * v.element_size()
    return n


def footprint(model, optimizer, dev) -> dict:
    """Collective: trainable parameters and optimizer-state bytes (summed over ranks, and the largest rank)."""
    mine = optimizer_state_bytes(optimizer)
    t = torch.tensor([mine, mine], dtype=torch.float64, device=dev)
    if dist.is_initialized() and dist.get_world_size() > 1:
        total = t[:1].clone()
        dist.all_reduce(total)
        biggest = t[1:].clone()
        dist.all_reduce(biggest, op=dist.ReduceOp.MAX)
        t = torch.cat([total, biggest])
    counts = parameter_counts(model)
    return {**counts, "optimizer_state_bytes": int(t[0].item()), "optimizer_state_bytes_max_rank": int(t[1].item())}

