"""Throughput and model-FLOPs utilisation, metrics.jsonl (and the trackers of `train.loggers`, cpt.train.loggers)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

from cpt.artifacts.stagedir import StageDir

# dense bf16 peak TFLOP/s per device (vendor data sheets, no sparsity); matched as substrings of the device name
PEAK_TFLOPS = {
    "H200": 989.0, "H100": 989.0, "H800": 989.0, "A100": 312.0, "A800": 312.0, "L40S": 362.0, "A10G": 125.0,
    "A6000": 155.0, "V100": 125.0, "4090": 165.0,
}


def model_flops_per_token(n_params: int, n_layers: int, hidden: int, seq_len: int, trainable_fraction: float = 1.0
                          ) -> float:
    """Training FLOPs per token: 6 N for the dense matmuls (2 forward + 4 backward; backward of frozen weights
    skips the weight-gradient half) plus causal attention scores 6 * n_layers * seq_len * hidden
    (= 12 L s h halved by the causal mask)."""
    dense = 2 * n_params + 2 * n_params + 2 * n_params * trainable_fraction
    attention = 6 * n_layers * seq_len * hidden
    return dense + attention


def peak_flops_per_device(configured_tflops: float | None, device_name: str | None) -> float | None:
    if configured_tflops:
        return configured_tflops * 1e12
    if device_name:
        for key, tflops in PEAK_TFLOPS.items():
            if key in device_name:
                return tflops * 1e12
    return None


def mfu(tokens_per_s: float, flops_per_token: float, peak_flops: float | None, n_devices: int) -> float | None:
    if not peak_flops or not math.isfinite(tokens_per_s):
        return None
    return tokens_per_s * flops_per_token / (peak_flops * n_devices)


def device_name() -> str | None:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return None


class MetricsLogger:
    """Rank 0 only: appends one JSON object per optimizer step to metrics.jsonl and hands the same record to the
    trackers of `train.loggers` (tensorboard, wandb, dvclive: cpt.train.loggers).

    On resume, lines for steps after the checkpoint (written before a crash) are dropped so the file stays
    one line per step."""

    def __init__(self, out_dir: str | Path, enabled: bool, tensorboard: bool = False, resume_step: int = 0,
                 loggers: Sequence[str] | None = None, run_config: dict | None = None):
        from cpt.train.loggers import open_trackers

        self.enabled = enabled
        self.path = StageDir(out_dir).metrics
        self.trackers = []
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            keep = []
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    if json.loads(line).get("step", 0) <= resume_step:
                        keep.append(line)
                except json.JSONDecodeError:
                    continue
            self.path.write_text("".join(k + "\n" for k in keep), encoding="utf-8")
        if loggers is None:
            loggers = ["jsonl", "tensorboard"] if tensorboard else ["jsonl"]
        self.trackers = open_trackers(loggers, out_dir, resume_step, run_config)

    def log(self, record: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
        if self.trackers:
            from cpt.train.loggers import scalars

            values = scalars(record)
            for tracker in self.trackers:
                tracker.log(record["step"], values)

    def close(self):
        for tracker in self.trackers:
            tracker.close()
        self.trackers = []
