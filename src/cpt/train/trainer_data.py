"""The Trainer's data setup: the stage's dataset (or random tokens for a benchmark), the config it implies
(train.max_length follows the dataset), and the run plan: resume point, accumulation, sampler, step count."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from cpt.artifacts.identity import check_dataset_model
from cpt.core.errors import TrainError
from cpt.train import reference_data
from cpt.train.config import TrainConfig, with_dataset_max_length
from cpt.train.data import BucketedDataset, BucketOrderedSampler, RandomTokenDataset
from cpt.train.resume import ResumePlan, plan_resume


def open_data(cfg: TrainConfig, dataset_dir, model_dir: Path, output: Path, benchmark: dict | None, dp_size: int,
              vocab: int, rank: int):
    """(dataset, cfg with the dataset's max_length)."""
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
    return data, cfg


@dataclass
class RunPlan:
    resume: ResumePlan | None
    accumulation_steps: int
    sampler: BucketOrderedSampler
    step: int
    tokens: int
    total_steps: int


def plan_run(cfg: TrainConfig, data, found: Path | None, world: int, layout, pt, mutable_keys: set[str],
             run_lineage: dict | None = None) -> RunPlan:
    """Where the run starts (a verified checkpoint or step 0), with how many micro batches per step, and where
    it ends (the sampler's remaining steps, capped by train.max_steps)."""
    resume = None
    if found is not None:
        resume = plan_resume(found, cfg.to_dict(), world, layout.dp_size, pt.resume.reshard, cfg.plugin,
                             mutable_keys, run_lineage)
    accum = resume.accumulation_steps if resume else cfg.accumulation_steps
    sampler = BucketOrderedSampler(data.bucket_sizes, cfg.micro_batch_size, layout.dp_size, layout.dp_rank, cfg.seed,
                                   cfg.epochs)
    step, tokens = 0, 0
    if resume is not None:
        sampler.load_state_dict(resume.state["sampler"])
        step, tokens = int(resume.state["step"]), int(resume.state["tokens"])
    total_steps = step + sampler.remaining_steps(accum)
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)
    return RunPlan(resume, accum, sampler, step, tokens, total_steps)
