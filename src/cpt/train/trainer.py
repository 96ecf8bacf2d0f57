"""The Trainer: one stage's training as explicit steps, engine-agnostic (cpt.train.engine).

    setup()          distributed start, model, engine (from the plugin traits), data, resume point, optimizer,
                     scheduler, wrapping, checkpoint / init-checkpoint loading, logging
    train_step()     one optimizer step: fetch the micro batches, one collective (token counts + preemption), then
                     forward_backward() over them (accumulation without sync), clip + step, metrics
    checkpoint()     a verified checkpoint directory (+ the effective config) through the engine
    export()         final/: the Hugging Face model (+ the effective config)

`effective_config()` is the training section as it ran: train.max_length after the dataset's, the accumulation
steps after an elastic resume changed them; it is written into every checkpoint and into final/
(`EFFECTIVE_CONFIG`), and `from_mapping` reads it back. cpt.train.loop runs the steps (preemption, fault injection).
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

from cpt.artifacts.dataset import IGNORE_INDEX
from cpt.artifacts.stagedir import EFFECTIVE_CONFIG, StageDir
from cpt.core.errors import CheckpointError, TrainError
from cpt.model.safetensors_io import check_model_weights
from cpt.train import checkpoint as ckpt
from cpt.train import lora
from cpt.train.ckpt_io import write_json_atomic
from cpt.train.config import TrainConfig
from cpt.train.data import Collator
from cpt.train.metrics import MetricsLogger, device_name, mfu, model_flops_per_token, peak_flops_per_device
from cpt.train.optim import NEFTune, build_optimizer, build_scheduler, freeze_non_embeddings
from cpt.train.plugins import traits
from cpt.train.progress import ProgressLog
from cpt.train.resume import lineage
from cpt.train.rng import reseed
from cpt.train.runtime import (
    SampleTrace,
    all_reduce_sum,
    attention_implementation,
    device_type,
    gradient_checkpointing_active,
    init_distributed,
    load_model,
    model_loss_sum,
    peak_memory_bytes,
    pipeline_criterion,
    token_loss_sum,
    update_run_json,
)
from cpt.train.trainer_data import open_data, plan_run

# keys that may change between a checkpoint and its resume without breaking exactness
RESUME_MUTABLE_KEYS = {"trace_samples", "max_steps", "save_interval", "keep_last", "log_interval", "tensorboard",
                       "peak_tflops", "dist_timeout_s", "init", "init_checkpoint", "progress_interval"}


class Trainer:
    """One stage's training on every rank; the steps are methods, the engine is what the plugin traits build."""

    def __init__(self, cfg: TrainConfig, model_dir, dataset_dir, output_dir, benchmark: dict | None = None,
                 progress: bool = True):
        self.cfg, self.benchmark, self.progress = cfg, benchmark, progress
        self.model_dir, self.dataset_dir, self.output = Path(model_dir), dataset_dir, Path(output_dir)
        self.stage = StageDir(self.output)
        self.history: list[dict] = []
        self.step, self.tokens_seen, self.last_saved = 0, 0, 0
        self.bar = None
        self.metrics = None

    def say(self, text: str) -> None:
        if self.rank == 0:
            print(text, file=sys.stderr, flush=True)

    # ---- setup -----------------------------------------------------------------------------------------------
    def setup(self) -> "Trainer":
        from transformers import AutoConfig

        cfg = self.cfg
        self.dev = dev = device_type()
        self.pt = pt = traits(cfg)  # everything that differs between plugins (and engines)
        init_distributed(cfg.seed, colossalai=pt.needs_colossalai, timeout_s=cfg.dist_timeout_s)
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        torch.manual_seed(cfg.seed + self.rank)  # per-rank stream for NEFTune noise / dropout; restored on resume
        if not (self.model_dir / "config.json").is_file():
            raise TrainError(f"{self.model_dir}: not a Hugging Face model directory (no config.json); check --model")
        self.attn, no_flash = attention_implementation(cfg, dev)
        self.hf_config = hf_config = AutoConfig.from_pretrained(self.model_dir)
        check_model_weights(self.model_dir, getattr(hf_config, "vocab_size", None))  # named errors, not a traceback
        pt.check_device(dev)
        pt.check(dev, vocab_size=hf_config.vocab_size)  # refuse before loading anything
        if no_flash and cfg.flash_attention:
            self.say(f"train.flash_attention: using {self.attn} instead: {no_flash}")
        model = load_model(self.model_dir, pt, self.attn, dev)
        if cfg.grad_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.config.use_cache = False
        if cfg.freeze_non_embeds:
            freeze_non_embeddings(model)
        self.vocab = model.get_input_embeddings().num_embeddings
        self.engine = engine = pt.build_engine(dev, vocab_size=self.vocab)
        self.lora_stage = None
        if cfg.lora is not None:  # adapters (booster.enable_lora) + the configured embedding rows; cpt.train.lora
            model, self.lora_stage = lora.enable(engine, model, cfg, pt, hf_config, self.model_dir)
        self.neftune = NEFTune(cfg.neftune_alpha).attach(model.get_input_embeddings()) if cfg.neftune_alpha > 0 \
            else None
        n_params = sum(p.numel() for p in model.parameters())
        n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        embed_params = model.get_input_embeddings().weight.numel()

        # data, resume point, steps
        self.layout = pt.layout(getattr(engine, "plugin", None), self.world, self.rank)
        self.data, self.cfg = open_data(self.cfg, self.dataset_dir, self.model_dir, self.output, self.benchmark,
                                        self.layout.dp_size, self.vocab, self.rank)
        cfg = self.cfg
        found = None if self.benchmark else ckpt.find_resume_checkpoint(self.stage.checkpoints, log=self.say)
        self.lineage = None if self.benchmark else lineage(self.model_dir, self.dataset_dir)  # in every checkpoint
        plan = plan_run(cfg, self.data, found, self.world, self.layout, pt, RESUME_MUTABLE_KEYS, self.lineage)
        self.resume, self.accum, self.sampler = plan.resume, plan.accumulation_steps, plan.sampler
        self.step, self.tokens_seen, self.total_steps = plan.step, plan.tokens, plan.total_steps
        self.last_saved = self.step
        self.collate = Collator(pad_token_id=hf_config.pad_token_id or 0, use_doc_lengths=cfg.use_doc_lengths,
                                cross_document_attention=cfg.cross_document_attention, attention_impl=self.attn,
                                dtype=pt.param_dtype, pad_to_multiple_of=pt.pad_to_multiple_of)

        # optimizer, scheduler, wrapping
        model = engine.wrap_model(model)
        optimizer = build_optimizer(model, cfg, dev)
        scheduler = build_scheduler(optimizer, cfg, self.total_steps)
        self.model, self.optimizer, self.scheduler = engine.wrap(model, optimizer, scheduler)
        trainer_info = {
            "plugin": cfg.plugin, "world_size": self.world, "dp_size": self.layout.dp_size, "tp": cfg.tp,
            "pp": cfg.pp, "sp": cfg.sp, "precision": cfg.precision, "device": dev, "device_name": device_name(),
            "attention": engine.attention_that_ran(self.model), "flash_attention_requested": cfg.flash_attention,
            "flash_attention_fallback_reason": no_flash if self.attn != "flash_attention_2" else None,
            "gradient_checkpointing": gradient_checkpointing_active(self.model), "lazy_init": pt.lazy_init,
            "load_dtype": str(pt.load_dtype).removeprefix("torch."), "params_model_total": n_params,
            "params_rank0_after_boost": sum(p.numel() for p in self.model.parameters()), **engine.facts(),
        }
        if self.rank == 0:
            update_run_json(self.output, trainer_info)
        self.use_no_sync = pt.accumulate_without_sync and engine.supports_no_sync
        self.pp_micro_batches = cfg.micro_batch_size // cfg.pp_microbatch_size if pt.pipeline else 1
        self._load_start()
        if self.resume is not None and self.pt.rebuilds_grad_buckets and self.world > 1 and self.step < self.total_steps:
            self.settle_grad_buckets()

        self.metrics = MetricsLogger(self.output, enabled=(self.rank == 0 and not self.benchmark),
                                     tensorboard=cfg.tensorboard, resume_step=self.step)
        seq = self.benchmark["seq_len"] if self.benchmark else cfg.max_length
        # the input embedding is a lookup, not a matmul: its rows count only when tied to the LM head
        tied = getattr(hf_config, "tie_word_embeddings", False)
        self.flops_per_token = model_flops_per_token(n_params - (0 if tied else embed_params),
                                                     hf_config.num_hidden_layers, hf_config.hidden_size, seq,
                                                     n_trainable / max(n_params, 1))
        self.peak = peak_flops_per_device(cfg.peak_tflops, device_name())
        self.progress_log = ProgressLog(self.rank == 0, self.total_steps, self.step, self.tokens_seen,
                                        cfg.progress_interval)
        if self.rank == 0 and self.progress:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total_steps, initial=self.step, desc="train", unit="step", dynamic_ncols=True,
                            file=sys.stderr)
        self.trace = SampleTrace(self.output, self.rank, cfg.trace_samples and not self.benchmark, self.step,
                                 self.world)
        self.model.train()
        return self

    def _save_extra(self, directory: Path) -> None:
        """Every rank: the plugin's master weights; rank 0: the effective config (inside the manifest)."""
        self.pt.save_master_weights(self.model, self.optimizer, directory, self.rank)
        if self.rank == 0:
            write_json_atomic(Path(directory) / EFFECTIVE_CONFIG, self.effective_config())

    def _load_masters(self, directory: Path) -> None:
        note = self.pt.load_master_weights(self.model, self.optimizer, directory, self.rank)
        if note:
            print(f"[rank {self.rank}] {directory}: {note}", file=sys.stderr, flush=True)

    def _load_start(self) -> None:
        """Resume from the verified checkpoint, or start from train.init_checkpoint's optimizer state."""
        resume = self.resume
        if resume is not None:
            ckpt.load_checkpoint(self.engine, self.model, self.optimizer, self.scheduler, resume.path,
                                 load_rng=not resume.elastic,  # elastic: masters re-derived, RNG reseeded
                                 extra_load=None if resume.elastic else self._load_masters)
            if resume.elastic:
                reseed(self.cfg.seed, self.rank, self.step)
            self.say(f"resumed from {resume.path} at step {self.step} of {self.total_steps}"
                     + (f"; {resume.note}" if resume.note else ""))
        elif self.cfg.init == "checkpoint" and not self.benchmark:
            src = Path(self.cfg.init_checkpoint)
            if not (src / ckpt.STATE).is_file():
                raise TrainError(f"train.init_checkpoint: {src} is not a checkpoint directory (no {ckpt.STATE})")
            problems = ckpt.verify_checkpoint(src)
            if problems:
                raise CheckpointError(f"train.init_checkpoint: {src} is corrupt ({'; '.join(problems[:5])})")
            ckpt.load_checkpoint(self.engine, self.model, self.optimizer, None, src, load_rng=False,
                                 extra_load=self._load_masters)

    def settle_grad_buckets(self) -> None:
        """Make a resumed process sum gradients as the uninterrupted run does (bit-identical resume).

        DistributedDataParallel lays its gradient buckets out anew after a process's first backward (in the order
        the gradients became ready) and trains every later step with that layout. A bucket's layout decides where
        each gradient element falls in the all-reduce buffer, and so, with more than two ranks, the order in which
        the ring sums its values: a resumed process training its first step on the initial buckets would differ
        from the uninterrupted run in the last bits (~1e-7 relative). One forward + backward over the next step's
        last micro batch, its gradients dropped, no optimizer step, the sampler rewound and the random state
        restored: the first resumed step then runs on the buckets the uninterrupted run had."""
        cpu_rng = torch.get_rng_state()
        cuda_rng = torch.cuda.get_rng_state_all() if self.dev == "cuda" else None
        _, batches, _, _, _ = self.fetch_group()
        self.sampler.rewind_group()
        self.forward_backward(batches[-1:], 1.0)  # one micro batch: a synchronised backward
        self.optimizer.zero_grad()
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)

    # ---- the effective config + run state ----------------------------------------------------------------------
    def effective_config(self) -> dict:
        """The training section as it runs (a valid `train` section: cpt.train.config.from_mapping reads it)."""
        return dataclasses.replace(self.cfg, accumulation_steps=self.accum).to_dict()

    def run_state(self, stopped: bool = False) -> dict:
        dp = self.layout.dp_size
        return {"step": self.step, "tokens": self.tokens_seen, "epoch": self.sampler.state.epoch,
                "sampler": self.sampler.state_dict(), "world_size": self.world, "dp_size": dp,
                "total_steps": self.total_steps, "config": self.cfg.to_dict(), "accumulation_steps": self.accum,
                "global_batch": self.cfg.micro_batch_size * dp * self.accum, "plugin": self.cfg.plugin,
                "engine": self.engine.name, "preempted": stopped,
                "padding_slots_per_epoch": self.sampler.padding_slots_per_epoch(),
                "micro_steps_per_epoch": self.sampler.micro_steps_per_epoch(), "lineage": self.lineage}

    # ---- one optimizer step --------------------------------------------------------------------------------------
    def _reduce_device(self):
        return self.dev if self.dev == "cpu" else torch.cuda.current_device()

    def fetch_group(self):
        """The micro batches of the next step: (epoch, batches, traced rows, real tokens, label tokens)."""
        first_micro = self.sampler.state.micro_step
        epoch, group = self.sampler.next_group(self.accum)
        batches, real_tokens, label_tokens, traced = [], 0, 0, []
        for j, slots in enumerate(group):
            rows = [self.data.fetch(s) for s in slots]
            traced.append((first_micro + j, rows))
            batch = self.collate(rows)
            if int(batch["input_ids"].max()) >= self.vocab:
                raise TrainError(f"token id {int(batch['input_ids'].max())} >= model vocabulary {self.vocab}: the "
                                 f"dataset was tokenized for another model (--dataset vs --model)")
            real_tokens += sum(len(r["input_ids"]) for r in rows if not r.get("padding"))
            label_tokens += int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
            batch["lengths"] = torch.tensor([len(r["input_ids"]) for r in rows])
            batches.append(batch)
        return epoch, batches, traced, real_tokens, label_tokens

    def forward_backward(self, batches: list[dict], denom: float) -> torch.Tensor:
        """Forward + backward over a step's micro batches; returns this rank's token-loss sum (float64, CPU).
        Gradients are reduced once per optimizer step: earlier micro batches run without sync (plugins that
        all-reduce the *accumulated* gradient after every backward would count them twice)."""
        engine, pt, dp_size = self.engine, self.pt, self.layout.dp_size
        loss_sum_local = torch.zeros((), dtype=torch.float64)
        for i, batch in enumerate(batches):
            lengths = batch.pop("lengths")
            labels = batch["labels"]
            inputs = {k: v.to(self.dev) if self.dev == "cpu" else v.cuda() for k, v in batch.items() if k != "labels"}
            if self.neftune is not None:
                self.neftune.lengths = lengths
            sync = (engine.no_sync(self.model, self.optimizer) if self.use_no_sync and i < len(batches) - 1
                    else _null())
            if pt.pipeline:
                # the schedule splits the batch into pipeline micro-batches and divides each criterion value by
                # their number; the criterion returns the micro-batch's token-loss SUM scaled like the
                # non-pipeline path, so a step's gradient is the token mean over all its micro batches
                inputs["labels"] = labels.to(inputs["input_ids"].device)
                sums: list[torch.Tensor] = []
                with sync:
                    engine.execute_pipeline(iter([inputs]), self.model,
                                            pipeline_criterion(dp_size * self.pp_micro_batches / denom, sums),
                                            self.optimizer)
                for part in sums:  # last pipeline stage only; other stages contribute nothing
                    loss_sum_local += part.double().cpu()
                continue
            with sync:
                with pt.autocast(self.dev):
                    if pt.distributed_loss:  # e.g. vocab-parallel logits: the model's distributed loss
                        out = self.model(**inputs, labels=labels.to(inputs["input_ids"].device))
                        loss_sum = model_loss_sum(out, labels)
                    else:
                        out = self.model(**inputs)
                        loss_sum = token_loss_sum(out.logits, labels)
                loss = loss_sum * (dp_size / denom)
                engine.backward(loss, self.optimizer)
            loss_sum_local += loss_sum.detach().double().cpu()
        return loss_sum_local

    def train_step(self, stop_requested: bool) -> dict | None:
        """One optimizer step; None (nothing trained, the group rewound) when any rank was asked to stop."""
        t0 = time.perf_counter()
        epoch, batches, traced, real_tokens, label_tokens = self.fetch_group()
        # one collective per step: token counts + "a rank was asked to stop"
        g_label, g_real, g_stop = all_reduce_sum([label_tokens, real_tokens, float(stop_requested)],
                                                 self._reduce_device())
        g_label, g_real = g_label / self.layout.data_replicas, g_real / self.layout.data_replicas
        if g_stop > 0:
            self.sampler.rewind_group()
            return None
        for micro_step, rows in traced:
            self.trace.log(self.step + 1, epoch, micro_step, rows)
        denom = max(g_label, 1.0)
        loss_sum_local = self.forward_backward(batches, denom)
        grad_norm = self.engine.clip_and_step(self.optimizer)
        self.scheduler.step()
        self.optimizer.zero_grad()
        self.step += 1
        self.tokens_seen += int(g_real)
        (g_loss_sum,) = all_reduce_sum([float(loss_sum_local)], self._reduce_device())
        loss_value = g_loss_sum / self.layout.loss_replicas / denom
        if not math.isfinite(loss_value) and self.cfg.precision != "fp16":
            raise TrainError(f"step {self.step}: loss is {loss_value} (diverged); lower train.lr or check the data")
        dt = time.perf_counter() - t0
        tps = g_real / dt if dt > 0 else float("nan")
        record = {"step": self.step, "epoch": epoch, "tokens": self.tokens_seen, "loss": loss_value,
                  "lr": self.scheduler.get_last_lr()[0], "grad_norm": float(grad_norm) if grad_norm is not None
                  else None, "tokens_per_s": tps, "mfu": mfu(tps, self.flops_per_token, self.peak, self.world),
                  "seconds": dt, "peak_memory_bytes": peak_memory_bytes(self.dev)}
        self.history.append(record)
        if self.step % self.cfg.log_interval == 0 or self.step == self.total_steps:
            self.metrics.log(record)
        self.progress_log.step(record)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss_value:.4f}", tok_s=f"{tps:,.0f}")
        return record

    # ---- checkpoint / export -----------------------------------------------------------------------------------
    def checkpoint(self, stopped: bool = False) -> Path:
        """Collective: checkpoints/step-N/ through the engine, with the run state and the effective config."""
        t_save = time.perf_counter()
        saved = ckpt.save_checkpoint(self.engine, self.model, self.optimizer, self.scheduler, self.stage.checkpoints,
                                     self.step, self.run_state(stopped), self.cfg.keep_last,
                                     extra_save=self._save_extra)
        if not stopped:
            self.progress_log.checkpoint(saved, time.perf_counter() - t_save)
        self.last_saved = self.step
        return saved

    def export(self, train_dtype: torch.dtype) -> Path:
        """Collective: final/ (the HF model, or the merged LoRA model + adapter) and its effective config."""
        if self.lora_stage is not None:  # merged plain HF model + the adapter beside it
            ckpt.check_finite(self.model, f"final model {self.stage.final}")  # (export_final checks its own)
            final = self.lora_stage.export(self.model, self.hf_config, self.model_dir, self.output, train_dtype)
        else:
            final = ckpt.export_final(self.engine, self.model, self.engine.unwrap(self.model).config,
                                      self.model_dir, self.stage.final, train_dtype)
        if self.rank == 0:
            write_json_atomic(Path(final) / EFFECTIVE_CONFIG, self.effective_config())
        ckpt.barrier()
        return final

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.metrics is not None:
            self.metrics.close()


def _null():
    import contextlib

    return contextlib.nullcontext()
