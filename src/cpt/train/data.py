"""Bucketed training data: reader of the dataset contract, a bucket-ordered resumable distributed sampler, a collator.

Dataset contract (README.md, "Dataset contract"; written by cpt.dataset, see cpt.dataset.manifest):
<dataset>/manifest.json {"buckets": [dir names in training order], ...} and one `datasets` save_to_disk directory
per bucket with input_ids, labels, doc_lengths (unpadded sequences); or a reference prepare_pretrain_dataset.py
output, its part-* directories the buckets (cpt.train.reference_data).

Order guarantee: a *micro step* is one micro batch on every data-parallel rank. Every micro step holds samples of
exactly one bucket, and micro steps run bucket after bucket, so every sample of bucket i is processed (on every
rank) before any sample of bucket i+1. Samples are shuffled only inside a bucket, with a generator seeded by
(seed, epoch, bucket). When a bucket's size is not a multiple of micro_batch_size x dp, its last micro step is
filled with *padding slots*: repeats of samples of the same bucket whose labels are all masked, so they add no
loss and no gradient; their number is reported (`padding_slots`), never hidden.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from cpt.artifacts.dataset import IGNORE_INDEX, check_files  # labels with no loss: the dataset format's
from cpt.core.errors import DatasetError, TrainError


class BucketedDataset:
    """Random access over the buckets of one stage, in manifest order. Index = global row number."""

    def __init__(self, root: str | Path):
        import datasets

        self.root = Path(root)
        manifest_path = self.root / "manifest.json"
        if not manifest_path.is_file():
            from cpt.train.reference_data import reference_manifest, reference_parts

            if not reference_parts(self.root):
                raise DatasetError(f"{manifest_path}: missing; expected the dataset stage's manifest with 'buckets' "
                                   f"(or part-* directories of a prepare_pretrain_dataset.py output)")
            self.manifest, self.buckets = reference_manifest(self.root)
            self._index(self.manifest["buckets"])
            return
        try:
            self.manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{manifest_path}: not valid JSON: {exc}") from exc
        names = self.manifest.get("buckets")
        if not isinstance(names, list) or not names:
            raise DatasetError(f"{manifest_path}: 'buckets' must be a non-empty list of directory names")
        check_files(self.root, self.manifest)  # an interrupted rebuild: buckets that are not the manifest's
        self.buckets = []
        for name in names:
            path = self.root / name
            if not path.is_dir():
                raise DatasetError(f"{manifest_path}: bucket {name!r} listed but {path} does not exist")
            ds = datasets.load_from_disk(str(path))
            missing = {"input_ids", "labels"} - set(ds.column_names)
            if missing:
                raise DatasetError(f"{path}: missing column(s) {sorted(missing)}")
            self.buckets.append(ds)
        self._index(names)
        n = self.manifest.get("num_sequences")
        if isinstance(n, int) and n != self.offsets[-1]:
            raise DatasetError(f"{manifest_path}: lists {n} sequences, its buckets hold {self.offsets[-1]}; an "
                               f"interrupted rebuild? Rebuild this stage")

    def _index(self, names) -> None:
        self.bucket_names = list(names)
        self.bucket_sizes = [len(b) for b in self.buckets]
        self.offsets = np.concatenate([[0], np.cumsum(self.bucket_sizes)]).tolist()
        self.has_doc_lengths = all("doc_lengths" in b.column_names for b in self.buckets)

    def __len__(self) -> int:
        return self.offsets[-1]

    def locate(self, index: int) -> tuple[int, int]:
        b = bisect.bisect_right(self.offsets, index) - 1
        return b, index - self.offsets[b]

    def __getitem__(self, index: int) -> dict:
        b, i = self.locate(index)
        row = self.buckets[b][i]
        out = {"input_ids": row["input_ids"], "labels": row["labels"], "bucket": b, "index": index}
        if "doc_lengths" in row:
            out["doc_lengths"] = row["doc_lengths"]
        return out

    def fetch(self, slot: int) -> dict:
        """A sampler slot: index >= 0 is a real sample, -(index+1) a padding slot (labels all masked)."""
        if slot >= 0:
            return self[slot]
        row = self[-slot - 1]
        row["labels"] = [IGNORE_INDEX] * len(row["labels"])
        row["padding"] = True
        return row


class RandomTokenDataset:
    """Benchmark data: random token sequences of a fixed length in one bucket (like the reference's --benchmark)."""

    def __init__(self, num_samples: int, seq_len: int, vocab_size: int, seed: int = 0):
        self.num_samples, self.seq_len, self.vocab_size, self.seed = num_samples, seq_len, vocab_size, seed
        self.bucket_sizes = [num_samples]
        self.bucket_names = ["random"]
        self.has_doc_lengths = False

    def __len__(self):
        return self.num_samples

    def fetch(self, slot: int) -> dict:
        index = slot if slot >= 0 else -slot - 1
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        ids = torch.randint(0, self.vocab_size, (self.seq_len,), generator=g).tolist()
        labels = list(ids) if slot >= 0 else [IGNORE_INDEX] * self.seq_len
        return {"input_ids": ids, "labels": labels, "bucket": 0, "index": index}


@dataclass
class SamplerState:
    epoch: int = 0
    micro_step: int = 0  # micro steps of `epoch` already consumed

    def to_dict(self):
        return {"epoch": self.epoch, "micro_step": self.micro_step}


def consumed_position(bucket_sizes: Sequence[int], slots_per_micro_step: int, micro_step: int) -> int:
    """Samples of an epoch's bucket order consumed after `micro_step` micro steps of `slots_per_micro_step`
    slots each (a micro step never spans two buckets; a bucket's last one may be part padding)."""
    position = 0
    for n in bucket_sizes:
        if n == 0:
            continue
        steps = -(-n // slots_per_micro_step)
        if micro_step >= steps:
            micro_step -= steps
            position += n
            continue
        return position + min(micro_step * slots_per_micro_step, n)
    return position


class BucketOrderedSampler:
    """Deterministic, distributed, resumable schedule of micro batches that never mixes bucket order.

    plan(epoch)[m][r] = the micro batch (a list of slots) of rank r at micro step m.

    Elastic resume: the order of an epoch is a property of the data (seed, epoch, bucket), not of the world size;
    a state written with other num_replicas / micro_batch_size resumes at the same *global sample position*
    (samples of the epoch's bucket order already consumed): the rest of that epoch is laid out for this run's
    ranks, later epochs as usual, so every sample is still trained exactly once per epoch, in bucket order.
    Micro steps keep counting from where the old run stopped.
    """

    def __init__(self, bucket_sizes: Sequence[int], micro_batch_size: int, num_replicas: int, rank: int,
                 seed: int, epochs: int):
        if not 0 <= rank < num_replicas:
            raise TrainError(f"rank {rank} outside [0, {num_replicas})")
        if sum(bucket_sizes) == 0:
            raise DatasetError("the dataset has no sequences (all buckets empty)")
        self.bucket_sizes = list(bucket_sizes)
        self.offsets = np.concatenate([[0], np.cumsum(self.bucket_sizes)]).astype(np.int64)
        self.micro = micro_batch_size
        self.replicas = num_replicas
        self.rank = rank
        self.seed = seed
        self.epochs = epochs
        self.state = SamplerState()
        self._plans: dict[int, list] = {}
        self._resumed: tuple[int, int, int] | None = None  # (epoch, micro steps done, samples done) when elastic
        self.resharded_from: dict | None = None

    @property
    def slots_per_micro_step(self) -> int:
        return self.micro * self.replicas

    def micro_steps_per_epoch(self) -> int:
        return sum(-(-n // self.slots_per_micro_step) for n in self.bucket_sizes if n)

    def padding_slots_per_epoch(self) -> int:
        return self.micro_steps_per_epoch() * self.slots_per_micro_step - sum(self.bucket_sizes)

    def bucket_permutation(self, epoch: int, bucket: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, epoch, bucket])
        return self.offsets[bucket] + rng.permutation(self.bucket_sizes[bucket])

    def _layout(self, epoch: int, start: int = 0) -> list[list[list[int]]]:
        """Micro steps of `epoch` from global sample position `start` on."""
        steps = []
        unit = self.slots_per_micro_step
        for b, n in enumerate(self.bucket_sizes):
            first = int(min(max(start - self.offsets[b], 0), n))
            if n - first <= 0:
                continue
            perm = self.bucket_permutation(epoch, b)[first:]
            pad = (-len(perm)) % unit
            # padding slots repeat samples of this bucket (labels masked), encoded as -(index + 1)
            slots = np.concatenate([perm, -(perm[np.arange(pad) % len(perm)] + 1)]).tolist()
            for i in range(0, len(slots), unit):
                chunk = slots[i:i + unit]
                # rank r takes positions r, r + R, r + 2R ... so padding spreads over ranks
                steps.append([chunk[r::self.replicas] for r in range(self.replicas)])
        return steps

    def plan(self, epoch: int) -> list[list[list[int]] | None]:
        if epoch in self._plans:
            return self._plans[epoch]
        if self._resumed is not None and self._resumed[0] == epoch:
            _, done_steps, done_samples = self._resumed
            steps = [None] * done_steps + self._layout(epoch, done_samples)  # None: run by the earlier world
        else:
            steps = self._layout(epoch)
        self._plans = {epoch: steps}
        return steps

    def __iter__(self):
        """Yield (epoch, micro_step, slots of this rank) from the current state to the end of the last epoch."""
        while self.state.epoch < self.epochs:
            plan = self.plan(self.state.epoch)
            while self.state.micro_step < len(plan):
                m = self.state.micro_step
                self.state.micro_step += 1
                yield self.state.epoch, m, plan[m][self.rank]
            self.state = SamplerState(self.state.epoch + 1, 0)

    def done(self) -> bool:
        return self.state.epoch >= self.epochs

    def remaining_steps(self, accumulation_steps: int) -> int:
        """Optimizer steps left from the current state to the end of the last epoch (a step never spans epochs)."""
        if self.done():
            return 0
        per_epoch = -(-self.micro_steps_per_epoch() // accumulation_steps)
        left_here = len(self.plan(self.state.epoch)) - self.state.micro_step
        return -(-left_here // accumulation_steps) + (self.epochs - self.state.epoch - 1) * per_epoch

    def position(self) -> int:
        """Samples of the current epoch's bucket order consumed so far (the same on every rank)."""
        if self.done():
            return 0
        plan = self.plan(self.state.epoch)
        start, pos = 0, 0
        if self._resumed is not None and self._resumed[0] == self.state.epoch:
            start, pos = self._resumed[1], self._resumed[2]
        for step in plan[start:self.state.micro_step]:
            pos += sum(1 for slots in step for s in slots if s >= 0)
        return pos

    def next_group(self, accumulation_steps: int) -> tuple[int, list[list[int]]]:
        """The micro batches of this rank for the next optimizer step (up to `accumulation_steps` micro steps;
        an epoch's last step may hold fewer) and advance the state past them."""
        if self.done():
            raise TrainError("the sampler is exhausted (all epochs consumed)")
        self._previous = SamplerState(self.state.epoch, self.state.micro_step)
        epoch, m0 = self.state.epoch, self.state.micro_step
        plan = self.plan(epoch)
        m1 = min(m0 + accumulation_steps, len(plan))
        group = [plan[m][self.rank] for m in range(m0, m1)]
        self.state = SamplerState(epoch, m1) if m1 < len(plan) else SamplerState(epoch + 1, 0)
        return epoch, group

    def rewind_group(self) -> None:
        """Undo the last next_group (the step was not run)."""
        self.state = self._previous

    def state_dict(self) -> dict:
        return {**self.state.to_dict(), "position": self.position(), "seed": self.seed,
                "bucket_sizes": self.bucket_sizes, "micro_batch_size": self.micro, "num_replicas": self.replicas}

    def load_state_dict(self, state: dict) -> None:
        """Resume from a state_dict; one written with another num_replicas / micro_batch_size resumes at the
        same global sample position (see the class doc). The data order itself (seed, buckets) must match."""
        for key, mine in (("seed", self.seed), ("bucket_sizes", self.bucket_sizes)):
            if key in state and state[key] != mine:
                raise TrainError(
                    f"checkpoint sampler has {key}={state[key]!r} but this run has {mine!r}; resume needs the same "
                    f"dataset and seed (or start a fresh output directory)")
        epoch, micro_step = int(state["epoch"]), int(state["micro_step"])
        old = (int(state.get("micro_batch_size", self.micro)), int(state.get("num_replicas", self.replicas)))
        self._plans = {}
        self._resumed = None
        self.resharded_from = None
        if old == (self.micro, self.replicas):
            self.state = SamplerState(epoch, micro_step)
            return
        position = state.get("position")
        if position is None:
            position = consumed_position(self.bucket_sizes, old[0] * old[1], micro_step)
        self._resumed = (epoch, micro_step, int(position))
        self.resharded_from = {"micro_batch_size": old[0], "num_replicas": old[1], "epoch": epoch,
                               "micro_step": micro_step, "position": int(position)}
        self.state = SamplerState(epoch, micro_step)
        if epoch < self.epochs and micro_step >= len(self.plan(epoch)):  # the old run had finished this epoch
            self.state = SamplerState(epoch + 1, 0)


def segment_ids_from_doc_lengths(doc_lengths: Sequence[int], length: int) -> list[int]:
    seg = []
    for d, n in enumerate(doc_lengths):
        seg.extend([d] * int(n))
    if len(seg) != length:
        raise DatasetError(f"doc_lengths sum to {len(seg)} but the sequence has {length} tokens")
    return seg


class Collator:
    """Right-pads a micro batch; builds labels (-100 on padding), attention mask, and, when configured,
    position ids that restart at every document and a block-diagonal causal mask (no cross-document attention).

    Padding positions form their own segment, so with flash attention's packed-sequence path (position ids
    restarting at 0) they never mix with real tokens either.
    """

    def __init__(self, *, use_doc_lengths: bool, cross_document_attention: bool, pad_token_id: int = 0,
                 attention_impl: str = "sdpa", dtype: torch.dtype = torch.float32, pad_to_multiple_of: int = 1):
        self.pad = pad_token_id
        self.use_doc_lengths = use_doc_lengths
        self.cross_document_attention = cross_document_attention
        self.attention_impl = attention_impl
        self.dtype = dtype
        self.multiple = pad_to_multiple_of

    def __call__(self, rows: list[dict]) -> dict:
        lengths = [len(r["input_ids"]) for r in rows]
        width = max(lengths)
        width = -(-width // self.multiple) * self.multiple
        n = len(rows)
        input_ids = torch.full((n, width), self.pad, dtype=torch.long)
        labels = torch.full((n, width), IGNORE_INDEX, dtype=torch.long)
        attention = torch.zeros((n, width), dtype=torch.long)
        for i, r in enumerate(rows):
            L = lengths[i]
            input_ids[i, :L] = torch.as_tensor(r["input_ids"], dtype=torch.long)
            labels[i, :L] = torch.as_tensor(r["labels"], dtype=torch.long)
            attention[i, :L] = 1
        batch = {"input_ids": input_ids, "labels": labels, "attention_mask": attention}
        if not self.use_doc_lengths:
            return batch
        segments = torch.zeros((n, width), dtype=torch.long)
        positions = torch.zeros((n, width), dtype=torch.long)
        for i, r in enumerate(rows):
            L = lengths[i]
            if r.get("doc_lengths") is None:
                raise DatasetError("train.use_doc_lengths is true but a sample has no doc_lengths column")
            seg = segment_ids_from_doc_lengths(r["doc_lengths"], L)
            seg = seg + [seg[-1] + 1 if seg else 0] * (width - L)  # padding = its own segment
            segments[i] = torch.as_tensor(seg)
            pos = []
            for d in list(r["doc_lengths"]) + ([width - L] if width > L else []):
                pos.extend(range(int(d)))
            positions[i] = torch.as_tensor(pos)
        batch["position_ids"] = positions
        if not self.cross_document_attention:
            if self.attention_impl == "flash_attention_2":
                # flash-attn's varlen path splits sequences where position ids restart; needs no mask
                batch.pop("attention_mask")
            else:
                same = segments[:, :, None] == segments[:, None, :]
                causal = torch.ones((width, width), dtype=torch.bool).tril()
                allowed = (same & causal)[:, None, :, :]
                mask = torch.zeros(allowed.shape, dtype=self.dtype)
                mask.masked_fill_(~allowed, torch.finfo(self.dtype).min)
                batch["attention_mask"] = mask
        return batch
