"""The training program: one stage, one HF model dir in, one HF model dir out; resumable and preemptible.

Launched by torchrun (one process per device) or run as a single process. Every rank runs `train()`.
Exit codes: 0 done, 75 (EX_TEMPFAIL) preempted after a checkpoint (rerun the same command to resume).
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist

from cpt.artifacts.dataset import IGNORE_INDEX
from cpt.artifacts.identity import check_dataset_model
from cpt.artifacts.stagedir import StageDir
from cpt.core.errors import PREEMPTED_EXIT_CODE, CheckpointError, TrainError
from cpt.train import checkpoint as ckpt
from cpt.train import lora, reference_data
from cpt.train.config import TrainConfig, with_dataset_max_length
from cpt.train.data import BucketedDataset, BucketOrderedSampler, Collator, RandomTokenDataset
from cpt.train.metrics import MetricsLogger, device_name, mfu, model_flops_per_token, peak_flops_per_device
from cpt.train.optim import NEFTune, build_optimizer, build_scheduler, freeze_non_embeddings
from cpt.train.plugins import traits
from cpt.train.progress import ProgressLog
from cpt.model.safetensors_io import check_model_weights
from cpt.train.resume import lineage, plan_resume
from cpt.train.rng import reseed
from cpt.train.runtime import (
    SampleTrace,
    all_reduce_max,
    all_reduce_sum,
    attention_implementation,
    attention_that_ran,
    check_ranks_agree,
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

PREEMPT_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
# keys that may change between a checkpoint and its resume without breaking exactness
RESUME_MUTABLE_KEYS = {"trace_samples", "max_steps", "save_interval", "keep_last", "log_interval", "tensorboard", "loggers", "peak_tflops",
                       "dist_timeout_s", "init", "init_checkpoint", "progress_interval"}
# fault injection for tests of crash recovery: SIGKILL this process (rank 0) right after this optimizer step
FAULT_ENV = "CPT_TRAIN_FAULT_SIGKILL_AFTER_STEP"
HANG_ENV = "CPT_TRAIN_FAULT_HANG_AFTER_STEP"  # tests: the last rank stops answering after this step


@dataclass
class RunResult:
    exit_code: int
    step: int
    tokens: int
    final_dir: Path | None = None
    history: list = field(default_factory=list)
    params_sha256: str | None = None
    padding_slots_per_epoch: int = 0


class PreemptFlag:
    """Set by SIGTERM/SIGUSR1; the loop all-reduces it each step so every rank stops after the same step."""

    def __init__(self):
        self.signum: int | None = None
        self._previous = {}

    def install(self):
        for sig in PREEMPT_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signum = signum

    def restore(self):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    @property
    def raised(self) -> bool:
        return self.signum is not None


def train(cfg: TrainConfig, model_dir: str | Path, dataset_dir: str | Path | None, output_dir: str | Path,
          benchmark: dict | None = None, progress: bool = True) -> RunResult:
    """Train one stage. `benchmark` = {"seq_len": int, "steps": int} trains on random tokens instead of a dataset
    and writes no checkpoints."""
    from colossalai.booster import Booster
    from transformers import AutoConfig

    dev = device_type()
    pt = traits(cfg)  # everything that differs between plugins
    init_distributed(cfg.seed, cfg.dist_timeout_s)
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(cfg.seed + rank)  # per-rank stream for NEFTune noise / dropout; restored on resume
    preempt = PreemptFlag().install()
    output = Path(output_dir)
    ckpt_root = StageDir(output).checkpoints
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise TrainError(f"{model_dir}: not a Hugging Face model directory (no config.json); check --model")

    # ---- model ---------------------------------------------------------------------------------------------
    attn, no_flash_reason = attention_implementation(cfg, dev)
    hf_config = AutoConfig.from_pretrained(model_dir)
    check_model_weights(model_dir, getattr(hf_config, "vocab_size", None))  # named errors, not a loader traceback
    pt.check_device(dev)
    pt.check(dev, vocab_size=hf_config.vocab_size)  # refuse before loading anything
    if no_flash_reason and cfg.flash_attention and rank == 0:
        print(f"train.flash_attention: using {attn} instead: {no_flash_reason}", file=sys.stderr, flush=True)
    model = load_model(model_dir, pt, attn, dev)
    if cfg.grad_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if cfg.freeze_non_embeds:
        freeze_non_embeddings(model)
    vocab = model.get_input_embeddings().num_embeddings
    plugin = pt.build(dev, vocab_size=vocab)
    booster = Booster(plugin=plugin, mixed_precision=pt.booster_mixed_precision(dev))
    lora_stage = None
    if cfg.lora is not None:  # adapters (booster.enable_lora) + the configured embedding rows; cpt.train.lora
        model, lora_stage = lora.enable(booster, model, cfg, pt, hf_config, model_dir)
    neftune = NEFTune(cfg.neftune_alpha).attach(model.get_input_embeddings()) if cfg.neftune_alpha > 0 else None
    n_params = sum(p.numel() for p in model.parameters())
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    embed_params = model.get_input_embeddings().weight.numel()

    # ---- data -----------------------------------------------------------------------------------------------
    layout = pt.layout(plugin, world, rank)
    dp_size, dp_rank = layout.dp_size, layout.dp_rank
    if benchmark:
        n = benchmark["steps"] * cfg.micro_batch_size * cfg.accumulation_steps * dp_size
        data = RandomTokenDataset(n, benchmark["seq_len"], vocab, seed=cfg.seed)
    else:
        data = BucketedDataset(dataset_dir)
        if rank == 0 and data.manifest.get("format") == reference_data.FORMAT:  # the user's data stays untouched
            written = reference_data.write_beside_run(data.manifest, output)
            print(f"{dataset_dir}: a prepare_pretrain_dataset.py output, {len(data.bucket_sizes)} part(s) as "
                  f"buckets; manifest: {written}", file=sys.stderr, flush=True)
        # the dataset's tokenizer must be the model's (vocabulary digest, sizes): one error before any step
        check_dataset_model(dataset_dir, getattr(data, "manifest", None) or {}, model_dir)
        cfg = with_dataset_max_length(cfg, data.manifest, dataset_dir)
    if cfg.use_doc_lengths and not data.has_doc_lengths:
        raise TrainError("train.use_doc_lengths is true but the dataset has no doc_lengths column")

    # ---- resume point: the newest intact checkpoint (verified; corrupt newer ones set aside) -------------------
    say = (lambda text: print(text, file=sys.stderr, flush=True)) if rank == 0 else (lambda text: None)
    found = None if benchmark else ckpt.find_resume_checkpoint(ckpt_root, log=say)
    resume = None
    run_lineage = None if benchmark else lineage(model_dir, dataset_dir)  # recorded in every checkpoint
    if found is not None:
        resume = plan_resume(found, cfg.to_dict(), world, dp_size, pt.resume.reshard, cfg.plugin,
                             RESUME_MUTABLE_KEYS, run_lineage)
    accum = resume.accumulation_steps if resume else cfg.accumulation_steps
    sampler = BucketOrderedSampler(data.bucket_sizes, cfg.micro_batch_size, dp_size, dp_rank, cfg.seed, cfg.epochs)
    micro_per_epoch = sampler.micro_steps_per_epoch()
    step, tokens_seen = 0, 0
    if resume is not None:
        sampler.load_state_dict(resume.state["sampler"])
        step, tokens_seen = int(resume.state["step"]), int(resume.state["tokens"])
    total_steps = step + sampler.remaining_steps(accum)
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)
    train_dtype = pt.train_dtype
    param_dtype = pt.param_dtype
    collate = Collator(pad_token_id=hf_config.pad_token_id or 0, use_doc_lengths=cfg.use_doc_lengths,
                       cross_document_attention=cfg.cross_document_attention, attention_impl=attn,
                       dtype=param_dtype, pad_to_multiple_of=pt.pad_to_multiple_of)

    # ---- optimiser, booster ---------------------------------------------------------------------------------
    optimizer = build_optimizer(model, cfg, dev)
    scheduler = build_scheduler(optimizer, cfg, total_steps)
    model, optimizer, _, _, scheduler = booster.boost(model, optimizer, lr_scheduler=scheduler)
    local_params = sum(p.numel() for p in model.parameters())
    trainer_info = {
        "plugin": cfg.plugin, "world_size": world, "dp_size": dp_size, "tp": cfg.tp, "pp": cfg.pp, "sp": cfg.sp,
        "precision": cfg.precision, "device": dev, "device_name": device_name(),
        "attention": attention_that_ran(model, plugin), "flash_attention_requested": cfg.flash_attention,
        "flash_attention_fallback_reason": no_flash_reason if attn != "flash_attention_2" else None,
        "gradient_checkpointing": gradient_checkpointing_active(model), "lazy_init": pt.lazy_init,
        "load_dtype": str(pt.load_dtype).removeprefix("torch."), "params_model_total": n_params,
        "params_rank0_after_boost": local_params,
    }
    if rank == 0:
        update_run_json(output, trainer_info)
    autocast = pt.autocast(dev)
    use_no_sync = pt.accumulate_without_sync and plugin.support_no_sync()
    pipeline = pt.pipeline
    pp_micro_batches = cfg.micro_batch_size // cfg.pp_microbatch_size if pipeline else 1

    # ---- resume / stage start -------------------------------------------------------------------------------
    def save_masters(directory: Path) -> None:
        pt.save_master_weights(model, optimizer, directory, rank)

    def load_masters(directory: Path) -> None:
        note = pt.load_master_weights(model, optimizer, directory, rank)
        if note:
            print(f"[rank {rank}] {directory}: {note}", file=sys.stderr, flush=True)

    if resume is not None:
        ckpt.load_checkpoint(booster, model, optimizer, scheduler, resume.path, load_rng=not resume.elastic,
                             extra_load=None if resume.elastic else load_masters)  # elastic: masters re-derived
        if resume.elastic:
            reseed(cfg.seed, rank, step)
        say(f"resumed from {resume.path} at step {step} of {total_steps}" + (f"; {resume.note}" if resume.note
                                                                             else ""))
    elif cfg.init == "checkpoint" and not benchmark:
        src = Path(cfg.init_checkpoint)
        if not (src / ckpt.STATE).is_file():
            raise TrainError(f"train.init_checkpoint: {src} is not a checkpoint directory (no {ckpt.STATE})")
        problems = ckpt.verify_checkpoint(src)
        if problems:
            raise CheckpointError(f"train.init_checkpoint: {src} is corrupt ({'; '.join(problems[:5])})")
        ckpt.load_checkpoint(booster, model, optimizer, None, src, load_rng=False, extra_load=load_masters)

    metrics = MetricsLogger(output, enabled=(rank == 0 and not benchmark), loggers=cfg.active_loggers,
                            resume_step=step, run_config=cfg.to_dict())
    seq_for_flops = benchmark["seq_len"] if benchmark else cfg.max_length
    # the input embedding is a lookup, not a matmul: its rows count only when tied to the LM head
    flops_per_token = model_flops_per_token(n_params - (0 if getattr(hf_config, "tie_word_embeddings", False)
                                                        else embed_params),
                                            hf_config.num_hidden_layers, hf_config.hidden_size,
                                            seq_for_flops, n_trainable / max(n_params, 1))
    peak = peak_flops_per_device(cfg.peak_tflops, device_name())
    progress_log = ProgressLog(rank == 0, total_steps, step, tokens_seen, cfg.progress_interval)
    bar = None
    if rank == 0 and progress:
        from tqdm import tqdm

        bar = tqdm(total=total_steps, initial=step, desc="train", unit="step", dynamic_ncols=True, file=sys.stderr)

    def run_state(stopped: bool = False) -> dict:
        return {"step": step, "tokens": tokens_seen, "epoch": sampler.state.epoch, "sampler": sampler.state_dict(),
                "world_size": world, "dp_size": dp_size, "total_steps": total_steps, "config": cfg.to_dict(),
                "accumulation_steps": accum, "global_batch": cfg.micro_batch_size * dp_size * accum,
                "plugin": cfg.plugin, "preempted": stopped,
                "padding_slots_per_epoch": sampler.padding_slots_per_epoch(),
                "micro_steps_per_epoch": micro_per_epoch, "lineage": run_lineage}

    trace = SampleTrace(output, rank, cfg.trace_samples and not benchmark, step, world)
    fault_step = int(os.environ.get(FAULT_ENV, "0") or 0)
    last_saved = step
    history = []
    exit_code = 0
    model.train()
    try:
        while step < total_steps:
            first_micro = sampler.state.micro_step
            epoch, group = sampler.next_group(accum)
            t0 = time.perf_counter()
            batches, real_tokens, label_tokens, traced = [], 0, 0, []
            for j, slots in enumerate(group):
                rows = [data.fetch(s) for s in slots]
                traced.append((first_micro + j, rows))
                batch = collate(rows)
                if int(batch["input_ids"].max()) >= vocab:
                    raise TrainError(f"token id {int(batch['input_ids'].max())} >= model vocabulary {vocab}: the "
                                     f"dataset was tokenized for another model (--dataset vs --model)")
                real_tokens += sum(len(r["input_ids"]) for r in rows if not r.get("padding"))
                label_tokens += int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
                batch["lengths"] = torch.tensor([len(r["input_ids"]) for r in rows])
                batches.append(batch)
            # one collective per step: token counts + "a rank was asked to stop"
            g_label, g_real, g_stop = all_reduce_sum([label_tokens, real_tokens, float(preempt.raised)],
                                                  dev if dev == "cpu" else torch.cuda.current_device())
            g_label, g_real = g_label / layout.data_replicas, g_real / layout.data_replicas
            if g_stop > 0:
                sampler.rewind_group()
                exit_code = PREEMPTED_EXIT_CODE
                break
            for micro_step, rows in traced:
                trace.log(step + 1, epoch, micro_step, rows)
            denom = max(g_label, 1.0)
            loss_sum_local = torch.zeros((), dtype=torch.float64)
            for i, batch in enumerate(batches):
                lengths = batch.pop("lengths")
                labels = batch["labels"]
                inputs = {k: v.to(dev) if dev == "cpu" else v.cuda() for k, v in batch.items() if k != "labels"}
                if neftune is not None:
                    neftune.lengths = lengths
                # gradients are reduced once per optimizer step: earlier micro batches run without sync (plugins
                # that all-reduce the *accumulated* gradient after every backward would count them twice)
                sync = (booster.no_sync(model, optimizer) if use_no_sync and i < len(batches) - 1
                        else contextlib.nullcontext())
                if pipeline:
                    # the schedule splits the batch into pipeline micro-batches and divides each criterion value
                    # by their number; the criterion returns the micro-batch's token-loss SUM scaled like the
                    # non-pipeline path, so a step's gradient is the token mean over all its micro batches
                    # (accumulation averages, it does not add)
                    inputs["labels"] = labels.to(inputs["input_ids"].device)
                    sums: list[torch.Tensor] = []
                    with sync:
                        booster.execute_pipeline(iter([inputs]), model,
                                                 pipeline_criterion(dp_size * pp_micro_batches / denom, sums),
                                                 optimizer, return_loss=False)
                    for part in sums:  # last pipeline stage only; other stages contribute nothing
                        loss_sum_local += part.double().cpu()
                    continue
                with sync:
                    with autocast:
                        if pt.distributed_loss:  # e.g. vocab-parallel logits: the model's distributed loss
                            out = model(**inputs, labels=labels.to(inputs["input_ids"].device))
                            loss_sum = model_loss_sum(out, labels)
                        else:
                            out = model(**inputs)
                            loss_sum = token_loss_sum(out.logits, labels)
                    loss = loss_sum * (dp_size / denom)
                    booster.backward(loss, optimizer)
                loss_sum_local += loss_sum.detach().double().cpu()
            grad_norm = pt.clip_and_step(optimizer)
            scheduler.step()
            optimizer.zero_grad()
            step += 1
            tokens_seen += int(g_real)
            (g_loss_sum,) = all_reduce_sum([float(loss_sum_local)], dev if dev == "cpu" else torch.cuda.current_device())
            loss_value = g_loss_sum / layout.loss_replicas / denom
            if not math.isfinite(loss_value) and cfg.precision != "fp16":
                raise TrainError(f"step {step}: loss is {loss_value} (diverged); lower train.lr or check the data")
            dt = time.perf_counter() - t0
            tps = g_real / dt if dt > 0 else float("nan")
            gn = float(grad_norm) if grad_norm is not None else None
            record = {"step": step, "epoch": epoch, "tokens": tokens_seen, "loss": loss_value,
                      "lr": scheduler.get_last_lr()[0], "grad_norm": gn, "tokens_per_s": tps,
                      "mfu": mfu(tps, flops_per_token, peak, world), "seconds": dt,
                      "peak_memory_bytes": peak_memory_bytes(dev)}
            history.append(record)
            if step % cfg.log_interval == 0 or step == total_steps:
                metrics.log(record)
            progress_log.step(record)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss_value:.4f}", tok_s=f"{tps:,.0f}")
            if not benchmark and (step % cfg.save_interval == 0 or step == total_steps):
                t_save = time.perf_counter()
                saved_dir = ckpt.save_checkpoint(booster, model, optimizer, scheduler, ckpt_root, step, run_state(),
                                                 cfg.keep_last, extra_save=save_masters)
                progress_log.checkpoint(saved_dir, time.perf_counter() - t_save)
                last_saved = step
            if fault_step and step == fault_step and rank == 0:
                os.kill(os.getpid(), signal.SIGKILL)
            if step == int(os.environ.get(HANG_ENV, "0") or 0) and rank == world - 1:
                signal.pause()  # a hung rank: the others block in the next collective
        if exit_code == PREEMPTED_EXIT_CODE:
            resume_point = None
            if step != last_saved:
                resume_point = ckpt.save_checkpoint(booster, model, optimizer, scheduler, ckpt_root, step,
                                                    run_state(True), cfg.keep_last, extra_save=save_masters)
            elif rank == 0:
                # the signal came right after a periodic save (or the resume): that checkpoint is the resume
                # point; mark it, so the launcher reports "preempted" (75) instead of torchrun's failure code
                resume_point = ckpt.latest_checkpoint(ckpt_root)
                if resume_point is not None:
                    ckpt.mark_preempted(resume_point)
            if resume_point is not None:
                say(f"preempted by signal {preempt.signum}: checkpoint {resume_point.name} (step {step}) saved; "
                    f"rerun the same command to resume")
            else:
                say(f"preempted by signal {preempt.signum} before the first step: nothing to save, no checkpoint "
                    f"written; rerun the same command to start")
            return RunResult(PREEMPTED_EXIT_CODE, step, tokens_seen, None, history)
        final = None
        (peak_mem,) = all_reduce_max([peak_memory_bytes(dev)], dev)
        if rank == 0:
            update_run_json(output, {"peak_memory_bytes_max_rank": int(peak_mem), "steps": step})
        digest = check_ranks_agree(model, pt)
        memory = lora.footprint(model, optimizer, dev if dev == "cpu" else torch.cuda.current_device())
        if rank == 0:  # trainable parameters, optimizer-state bytes; the LoRA settings that ran
            update_run_json(output, {**memory, "lora": lora_stage.facts() if lora_stage else None})
        if not benchmark and lora_stage is not None:  # merged plain HF model + the adapter beside it
            ckpt.check_finite(model, f"final model {StageDir(output).final}")  # (export_final checks its own)
            final = lora_stage.export(model, hf_config, model_dir, output, train_dtype)
        elif not benchmark:
            final = ckpt.export_final(booster, model, model.unwrap().config if hasattr(model, "unwrap")
                                      else hf_config, model_dir, StageDir(output).final, train_dtype)
        return RunResult(0, step, tokens_seen, final, history, digest, sampler.padding_slots_per_epoch())
    finally:
        if bar is not None:
            bar.close()
        metrics.close()
        preempt.restore()
