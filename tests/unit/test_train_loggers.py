"""train.loggers: each tracker (tensorboard, wandb offline, dvclive) records exactly metrics.jsonl's numbers, read
back from its own files; offline, no network."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from cpt.core.errors import ConfigError
from cpt.train.config import from_mapping
from cpt.train.loggers import scalars
from cpt.train.metrics import MetricsLogger

RECORDS = [
    {"step": 1, "epoch": 0, "loss": 5.123456789012345, "lr": 1e-4, "grad_norm": 0.987654321, "tokens": 64,
     "tokens_per_s": 1234.5678, "mfu": None, "seconds": 0.05},
    {"step": 2, "epoch": 0, "loss": 4.9, "lr": 2e-4, "grad_norm": float("nan"), "tokens": 128,
     "tokens_per_s": 1300.25, "mfu": None, "seconds": 0.04},
    {"step": 3, "epoch": 1, "loss": 4.5000000001, "lr": 3e-4, "grad_norm": 0.5, "tokens": 192,
     "tokens_per_s": 1299.0, "mfu": None, "seconds": 0.06},
]


def _expected(out: Path) -> dict[str, dict[int, float]]:
    """metrics.jsonl as written, as {key: {step: value}}."""
    want: dict[str, dict[int, float]] = {}
    for line in (out / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        for k, v in scalars(rec).items():
            want.setdefault(k, {})[rec["step"]] = v
    return want


def _tensorboard(out: Path) -> dict[str, dict[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    return {t.removeprefix("train/"): {e.step: e.value for e in acc.Scalars(t)} for t in acc.Tags()["scalars"]}


def _wandb_records(path: Path):
    """The protobuf records of a .wandb file: a 7-byte header, then LevelDB's log format (32 KiB blocks; each chunk:
    crc32c 4 bytes, length 2 bytes LE, type 1 byte: 1 full, 2 first, 3 middle, 4 last)."""
    data = path.read_bytes()
    assert data[:4] == b":W&B", data[:7]
    pos, block, pending = 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # block trailer: padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 0 and length == 0:
            break
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            yield pending
            pending = b""


def _wandb(out: Path) -> dict[str, dict[int, float]]:
    from wandb.proto import wandb_internal_pb2

    (path,) = (out / "wandb").rglob("*.wandb")
    got: dict[str, dict[int, float]] = {}
    for data in _wandb_records(path):
        rec = wandb_internal_pb2.Record()
        rec.ParseFromString(data)
        if rec.WhichOneof("record_type") == "history":
            items = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.history.item}
            for k, v in items.items():
                if k.startswith("train/"):
                    got.setdefault(k.removeprefix("train/"), {})[items["_step"]] = v
    return got


def _dvclive(out: Path) -> dict[str, dict[int, float]]:
    got = {}
    for path in (out / "dvclive" / "plots" / "metrics" / "train").glob("*.tsv"):
        with open(path, newline="") as f:
            got[path.stem] = {int(r["step"]): float(r[path.stem]) for r in csv.DictReader(f, delimiter="\t")}
    return got


def test_every_tracker_records_metrics_jsonl_values(tmp_path):
    out = tmp_path / "stage"
    cfg = from_mapping({"loggers": ["jsonl", "tensorboard", "wandb", "dvclive"]})
    log = MetricsLogger(out, enabled=True, loggers=cfg.active_loggers, run_config=cfg.to_dict())
    for r in RECORDS:
        log.log(r)
    log.close()
    want = _expected(out)
    assert set(want) == {"epoch", "loss", "lr", "grad_norm", "tokens", "tokens_per_s", "seconds"}
    assert 2 not in want["grad_norm"]  # a NaN is in metrics.jsonl but no tracker records it

    assert _wandb(out) == want  # JSON: exact
    assert _dvclive(out) == want  # TSV of repr(): exact
    tb = _tensorboard(out)
    assert tb.keys() == want.keys()
    for key in want:  # TensorBoard stores float32: equal after the same rounding
        assert tb[key] == {s: float(np.float32(v)) for s, v in want[key].items()}, key


def test_dvclive_resume_drops_rows_after_the_checkpoint(tmp_path):
    out = tmp_path / "stage"
    log = MetricsLogger(out, enabled=True, loggers=["jsonl", "dvclive"])
    for r in RECORDS:
        log.log(r)
    log.close()  # "crash" after step 3, checkpoint at step 1: steps 2.. run again
    log = MetricsLogger(out, enabled=True, loggers=["jsonl", "dvclive"], resume_step=1)
    log.log({**RECORDS[1], "loss": 4.0})
    log.close()
    assert _dvclive(out) == _expected(out)
    assert _expected(out)["loss"] == {1: RECORDS[0]["loss"], 2: 4.0}


def test_logger_settings():
    assert from_mapping({}).active_loggers == ["jsonl", "tensorboard"]
    assert from_mapping({"tensorboard": False, "loggers": ["dvclive"]}).active_loggers == ["jsonl", "dvclive"]
    with pytest.raises(ConfigError, match="loggers"):
        from_mapping({"loggers": ["mlflow"]})
    assert MetricsLogger(Path("unused"), enabled=False, loggers=["wandb"]).trackers == []
