"""What one training step needs around the model: distributed start-up, attention choice, loss sums, all-reduces,
rank agreement, sample tracing and run.json facts. cpt.train.trainer composes these into the training program."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

from cpt.artifacts.dataset import IGNORE_INDEX
from cpt.artifacts.stagedir import StageDir
from cpt.core.errors import TrainError
from cpt.train.config import TrainConfig
from cpt.train.plugins import PluginTraits


def device_type() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


DIST_TIMEOUT: dict = {"s": None}  # train.dist_timeout_s of this process's run (what collective_failure reports)


def set_collective_timeout(seconds: int | None) -> None:
    """Every process group created from now on (the default one, and the plugin's data/tensor/pipeline groups,
    which ColossalAI creates without a timeout) times out a blocked collective after `seconds`
    (train.dist_timeout_s) instead of torch's 30 minutes (NCCL: 10)."""
    import datetime

    import torch.distributed.distributed_c10d as c10d

    if not seconds:
        return
    DIST_TIMEOUT["s"] = int(seconds)
    c10d.default_pg_timeout = datetime.timedelta(seconds=int(seconds))
    if isinstance(getattr(c10d, "default_pg_nccl_timeout", None), datetime.timedelta):
        c10d.default_pg_nccl_timeout = datetime.timedelta(seconds=int(seconds))


def collective_failure(exc: BaseException) -> str | None:
    """The message for an error of a collective operation (a peer rank hung past the timeout, or gone), else
    None; names the hung or gone ranks with their node and pid where cpt.train.peers can tell."""
    msg = _collective_failure(exc)
    if msg is None:
        return None
    from cpt.train.peers import absent_peers

    who = absent_peers()
    return msg if who is None else msg.replace("; this rank stops", f"; {who}; this rank stops", 1)


def _collective_failure(exc: BaseException) -> str | None:
    e, seen = exc, set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        low = text.lower()
        if "timed out" in low or "timeout" in low:
            return (f"a collective operation did not complete within train.dist_timeout_s = {DIST_TIMEOUT['s']} s "
                    f"({text[:200]}): another rank is hung or gone (its own lines say which); this rank stops. "
                    f"Rerun the same command to resume from the latest checkpoint")
        if "connection closed by peer" in low or "connection reset" in low or "broken pipe" in low:
            return (f"another rank is gone: a collective operation lost its connection ({text[:200]}); this rank "
                    f"stops. Rerun the same command to resume from the latest checkpoint")
        e = e.__cause__ or e.__context__
    return None


def init_distributed(seed: int, colossalai: bool = True, timeout_s: int | None = None) -> None:
    """torchrun sets RANK/WORLD_SIZE/...; a plain `python -m cpt.train` runs as a world of one. `colossalai`:
    through colossalai.launch_from_torch (the ColossalAI engine), else torch's own process group (gloo on CPU,
    nccl on GPUs) with the same seeding (python, numpy, torch). `timeout_s` (train.dist_timeout_s): how long a
    collective may block (set_collective_timeout), for every process group either engine creates."""
    set_collective_timeout(timeout_s)
    if colossalai and device_type() == "cpu":
        from cpt.train.compat import apply_cpu_shims

        apply_cpu_shims()
    if dist.is_initialized():
        return
    _init_process_group(seed, colossalai, timeout_s)
    from cpt.train.peers import start

    start(dist.get_rank(), dist.get_world_size())  # names a hung or gone rank and its node in errors


def _init_process_group(seed: int, colossalai: bool, timeout_s: int | None) -> None:
    if "RANK" not in os.environ:
        os.environ.update({"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
                           "MASTER_PORT": str(_free_port())})
    if colossalai:
        import colossalai as clai

        clai.launch_from_torch(seed=seed, verbose=False)
        return
    import datetime
    import random

    import numpy as np

    if device_type() == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    kwargs = {"timeout": datetime.timedelta(seconds=timeout_s)} if timeout_s else {}
    dist.init_process_group(backend="nccl" if device_type() == "cuda" else "gloo", **kwargs)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def attention_implementation(cfg: TrainConfig, dev: str) -> tuple[str, str | None]:
    """(HF attn_implementation, why flash attention is not used or None)."""
    if not cfg.flash_attention:
        return "sdpa", "train.flash_attention is false"
    if dev != "cuda":
        return "sdpa", f"flash attention needs a CUDA GPU (device: {dev})"
    if importlib.util.find_spec("flash_attn") is None:
        return "sdpa", "the flash_attn package is not installed (pip install -e .[gpu])"
    return "flash_attention_2", None


def gradient_checkpointing_active(model) -> bool:
    """Any module of the (wrapped) model checkpoints its activations."""
    return any(getattr(m, "gradient_checkpointing", False) for m in model.modules())


def peak_memory_bytes(dev: str) -> int:
    """Peak device memory of this process (CUDA allocator) or, on CPU, its peak resident set size."""
    if dev == "cuda":
        return int(torch.cuda.max_memory_allocated())
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def update_run_json(output: Path, trainer: dict) -> None:
    """Merge the trainer's facts (attention that ran, layout, memory) into <output>/run.json under "trainer",
    keeping what the stage launcher wrote there (its key)."""
    StageDir(output).update_run(trainer=trainer)


def load_model(model_dir: Path, pt: PluginTraits, attn: str, dev: str):
    """The HF model, built lazily (LazyInitContext: no weights materialised until the plugin has sharded the
    model; booster.boost loads them) where the plugin supports it, else loaded in the dtype the plugin
    computes in (no full fp32 copy for ZeRO)."""
    from transformers import AutoModelForCausalLM

    if pt.lazy_init:
        from colossalai.lazy import LazyInitContext

        with LazyInitContext(default_device=torch.device(dev) if dev == "cpu" else torch.device(
                "cuda", torch.cuda.current_device())):
            return AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=pt.load_dtype,
                                                        attn_implementation=attn)
    return AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=pt.load_dtype, attn_implementation=attn)


def token_loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum of next-token cross entropies over unmasked labels (fp32)."""
    logits = logits[:, :-1, :].float()
    target = labels[:, 1:].to(logits.device)
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), target.reshape(-1), ignore_index=IGNORE_INDEX,
                           reduction="sum")


def model_loss_sum(out, labels: torch.Tensor) -> torch.Tensor:
    """Token-loss sum from a model that computed its own (mean) loss. A micro batch without any label (only
    padding slots) has loss 0/0 = NaN; it contributes an exact zero that still back-propagates through the
    model, so every rank runs the same collectives."""
    n_lab = int((labels[:, 1:] != IGNORE_INDEX).sum())
    if n_lab == 0:
        return out.logits.float().sum() * 0.0
    return out.loss.float() * n_lab


def pipeline_criterion(scale: float, sums: list):
    """Criterion for booster.execute_pipeline: the micro-batch's token-loss sum x `scale`; appends the unscaled
    sum (detached) to `sums` for logging."""

    def criterion(out, micro_batch):
        loss_sum = model_loss_sum(out, micro_batch["labels"])
        sums.append(loss_sum.detach())
        return loss_sum * scale

    return criterion


def all_reduce_sum(values: list[float], dev) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64, device=dev)
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t)
    return t.tolist()


def all_reduce_max(values: list[float], dev) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64, device=dev if dev == "cpu" else torch.cuda.current_device())
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.tolist()


def params_digest(model) -> str:
    """sha256 over the bytes of every parameter (name order) of this rank's (full) model copy."""
    import hashlib

    h = hashlib.sha256()
    for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
        h.update(name.encode())
        h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def check_ranks_agree(model, plugin_traits: PluginTraits) -> str | None:
    """Every data-parallel replica must hold identical weights; raises TrainError otherwise."""
    if not plugin_traits.replicated_params:  # parameters are sharded, not replicated
        return None
    digest = params_digest(model)
    digests = [None] * dist.get_world_size()
    dist.all_gather_object(digests, digest)
    if len(set(digests)) != 1:
        raise TrainError(f"data-parallel ranks disagree on the final weights: {digests}")
    return digest


class SampleTrace:
    """Per-rank jsonl of the samples trained at each step (train.trace_samples), truncated on resume."""

    def __init__(self, out_dir: Path, rank: int, enabled: bool, resume_step: int, world: int = 1):
        self.enabled = enabled
        self.path = StageDir(out_dir).trace(rank)
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        paths = [self.path]
        if rank == 0:  # ranks of an earlier, larger world (elastic resume) are truncated by rank 0
            paths += [p for p in self.path.parent.glob("rank-*.jsonl") if int(p.stem.split("-")[1]) >= world]
        for path in paths:
            keep = []
            if path.exists():
                keep = [ln for ln in path.read_text(encoding="utf-8").splitlines()
                        if ln.strip() and json.loads(ln)["step"] <= resume_step]
            path.write_text("".join(k + "\n" for k in keep), encoding="utf-8")

    def log(self, step: int, epoch: int, micro_step: int, rows: list[dict]):
        if self.enabled:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"step": step, "epoch": epoch, "micro_step": micro_step,
                                    "index": [r["index"] for r in rows], "bucket": [r["bucket"] for r in rows],
                                    "padding": [bool(r.get("padding")) for r in rows]}) + "\n")
