"""Tiny, seeded training inputs in the project's contracts (for tests, the benchmark and smoke runs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from cpt.artifacts.dataset import write_manifest
from cpt.artifacts.stagedir import StageDir
from cpt.launch.plan import LaunchSpec, local_argv


def make_tiny_model(out_dir: str | Path, vocab_size: int = 512, hidden: int = 32, layers: int = 2, heads: int = 4,
                    intermediate: int | None = None, max_positions: int = 512, seed: int = 0,
                    tied: bool = False, dtype=None) -> Path:
    """A randomly initialised LlamaForCausalLM saved as a HF directory (safetensors; fp32 unless `dtype`)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=intermediate or hidden * 2,
                      num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                      max_position_embeddings=max_positions, bos_token_id=1, eos_token_id=2, pad_token_id=0,
                      tie_word_embeddings=tied)
    model = LlamaForCausalLM(cfg)
    if dtype is not None:
        model = model.to(dtype)
    out = Path(out_dir)
    model.save_pretrained(out, safe_serialization=True)
    return out


def make_bucket_dataset(out_dir: str | Path, bucket_sizes: Sequence[int], vocab_size: int = 512,
                        min_len: int = 8, max_len: int = 32, seed: int = 0, learnable: bool = True,
                        mask_prefix: int = 0) -> Path:
    """results/<exp>/dataset/<S>/-style directory: bucket-NNNNN save_to_disk datasets + manifest.json.

    learnable=True makes sequences follow a simple rule (next = (cur * 3 + 1) mod V over a few docs) so the loss
    can fall quickly; each sequence packs 1-3 documents (doc_lengths); the first `mask_prefix` labels are -100.
    """
    import datasets

    rng = np.random.default_rng(seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names, n_seq, n_tok = [], 0, 0
    for b, n in enumerate(bucket_sizes):
        rows = {"input_ids": [], "labels": [], "doc_lengths": []}
        for _ in range(n):
            length = int(rng.integers(min_len, max_len + 1))
            n_docs = int(rng.integers(1, 4))
            cuts = sorted(set(rng.integers(1, length, size=n_docs - 1).tolist())) if length > 1 else []
            docs = np.diff([0, *cuts, length]).tolist()
            ids = []
            for d in docs:
                cur = int(rng.integers(3, vocab_size))
                for _ in range(d):
                    ids.append(cur)
                    cur = (cur * 3 + 1) % vocab_size if learnable else int(rng.integers(3, vocab_size))
                    cur = max(cur, 3)
            labels = list(ids)
            for i in range(min(mask_prefix, len(labels))):
                labels[i] = -100
            rows["input_ids"].append(ids)
            rows["labels"].append(labels)
            rows["doc_lengths"].append(docs)
            n_tok += length
        n_seq += n
        features = datasets.Features({k: datasets.Sequence(datasets.Value("int32")) for k in rows})
        name = f"bucket-{b:05d}"
        datasets.Dataset.from_dict(rows, features=features).save_to_disk(str(out / name))
        names.append(name)
    manifest = {"buckets": names, "num_sequences": n_seq, "num_tokens": n_tok, "max_length": max_len,
                "tokenizer": None}
    write_manifest(out, manifest)  # with the table of the bucket files, as cpt.dataset writes it
    return out


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_command(python: str, nproc: int, train_args: Sequence[str]) -> list[str]:
    """`python -m torch.distributed.run --standalone ... -m cpt.train ARGS` on this machine: the launcher's own local
    command line (cpt.launch.plan.local_argv), with `python` as the interpreter."""
    spec = LaunchSpec(nproc_per_node=int(nproc))
    spec.torchrun = [python, *spec.torchrun[1:]]
    return local_argv(spec, ["-m", "cpt.train", *train_args])


def read_trace(out_dir: str | Path) -> list[dict]:
    """All ranks' sample traces (train.trace_samples), each record tagged with its rank."""
    records = []
    for path in StageDir(out_dir).traces():
        rank = int(path.stem.split("-")[1])
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                records.append({**json.loads(line), "rank": rank})
    return records


def check_bucket_order(trace: list[dict], bucket_sizes: Sequence[int]) -> None:
    """Raise AssertionError unless, in every epoch, every real sample is trained exactly once and every sample of
    bucket i is trained (on any rank) at an earlier micro step than any sample of bucket i+1."""
    offsets = np.concatenate([[0], np.cumsum(bucket_sizes)])
    epochs = sorted({r["epoch"] for r in trace})
    for epoch in epochs:
        recs = [r for r in trace if r["epoch"] == epoch]
        real = sorted(i for r in recs for i, pad in zip(r["index"], r["padding"]) if not pad)
        assert real == list(range(int(offsets[-1]))), f"epoch {epoch}: samples not trained exactly once"
        first, last = {}, {}
        for r in recs:
            for b in r["bucket"]:
                first[b] = min(first.get(b, r["micro_step"]), r["micro_step"])
                last[b] = max(last.get(b, r["micro_step"]), r["micro_step"])
        buckets = sorted(first)
        for b1, b2 in zip(buckets, buckets[1:]):
            assert last[b1] < first[b2], f"epoch {epoch}: bucket {b1} still trained after bucket {b2} started"


def run_torchrun(repo: str | Path, nproc: int, train_args: Sequence[str], extra_env: dict | None = None,
                 timeout: float = 420):
    """Run `python -m cpt.train` under torchrun on CPU (gloo) with the repository's src/ first on the path."""
    import os
    import subprocess
    import sys

    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(repo) / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env.update(extra_env or {})
    return subprocess.run(torchrun_command(sys.executable, nproc, list(train_args)), env=env, capture_output=True,
                          text=True, timeout=timeout, cwd=str(repo))


def read_metrics(out_dir: str | Path) -> list[dict]:
    return [json.loads(x) for x in StageDir(out_dir).metrics.read_text(encoding="utf-8").splitlines()]


def final_tensors(out_dir: str | Path) -> dict:
    from safetensors.torch import load_file

    tensors = {}
    for f in sorted(StageDir(out_dir).final.glob("*.safetensors")):
        tensors.update(load_file(f))
    return tensors


def assert_same_bits(a: dict, b: dict) -> None:
    """Every tensor of `a` equals the one of `b` bit for bit (dtype included)."""
    import torch

    assert a.keys() == b.keys(), sorted(set(a) ^ set(b))
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        assert a[k].reshape(-1).view(torch.uint8).equal(b[k].reshape(-1).view(torch.uint8)), k


def assert_curves_agree(run: list[dict], ref: list[dict], loss_rel: float, grad_norm_rel: float | None = None) -> None:
    """Same steps, same token counts, losses (and gradient norms) within the relative tolerances at every step."""
    assert [r["step"] for r in run] == [r["step"] for r in ref]
    for a, b in zip(run, ref):
        assert a["tokens"] == b["tokens"], (a["step"], a["tokens"], b["tokens"])
        assert abs(a["loss"] - b["loss"]) <= loss_rel * abs(b["loss"]), (a["step"], a["loss"], b["loss"])
        if grad_norm_rel is not None:
            assert abs(a["grad_norm"] - b["grad_norm"]) <= grad_norm_rel * abs(b["grad_norm"]), (
                a["step"], a["grad_norm"], b["grad_norm"])
