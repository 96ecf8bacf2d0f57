"""Bucket-ordered sampler and collator (in-process; several ranks simulated by several samplers)."""

from __future__ import annotations

import pytest
import torch

from cpt.artifacts.dataset import IGNORE_INDEX
from cpt.core.errors import TrainError
from cpt.train.data import BucketedDataset, BucketOrderedSampler, Collator

SIZES = [11, 0, 7, 16]


def run_ranks(sizes, micro, replicas, seed=3, epochs=2, accum=2, resume_after=None):
    """Simulate `replicas` ranks step by step; optionally rebuild all samplers from state_dict after
    `resume_after` steps. Returns [(epoch, global micro step index, rank, slots)] in execution order."""
    samplers = [BucketOrderedSampler(sizes, micro, replicas, r, seed, epochs) for r in range(replicas)]
    events, steps = [], 0
    while not samplers[0].done():
        if resume_after is not None and steps == resume_after:
            states = [s.state_dict() for s in samplers]
            samplers = [BucketOrderedSampler(sizes, micro, replicas, r, seed, epochs) for r in range(replicas)]
            for s, st in zip(samplers, states):
                s.load_state_dict(st)
        first = samplers[0].state.micro_step
        groups = [s.next_group(accum) for s in samplers]
        assert len({g[0] for g in groups}) == 1 and len({len(g[1]) for g in groups}) == 1
        for j in range(len(groups[0][1])):
            for r, (epoch, group) in enumerate(groups):
                events.append((epoch, first + j, r, group[j]))
        steps += 1
    return events


def bucket_of(index, sizes):
    acc = 0
    for b, n in enumerate(sizes):
        acc += n
        if index < acc:
            return b
    raise AssertionError(index)


@pytest.mark.parametrize("resume_after", [None, 1, 3])
def test_bucket_order_exactly_once_across_ranks_and_resume(resume_after):
    events = run_ranks(SIZES, micro=2, replicas=2, resume_after=resume_after)
    for epoch in (0, 1):
        ev = [e for e in events if e[0] == epoch]
        real = [s for e in ev for s in e[3] if s >= 0]
        assert sorted(real) == list(range(sum(SIZES)))  # every sample exactly once per epoch
        # one bucket per micro step (all ranks), bucket ids never decrease along micro steps
        per_step = {}
        for _, m, _, slots in ev:
            per_step.setdefault(m, set()).update(bucket_of(s if s >= 0 else -s - 1, SIZES) for s in slots)
        order = [per_step[m] for m in sorted(per_step)]
        assert all(len(b) == 1 for b in order)
        flat = [next(iter(b)) for b in order]
        assert flat == sorted(flat) and set(flat) == {0, 2, 3}
        # "every sample of bucket i before any sample of bucket i+1": last micro step of i < first of i+1
        for b1, b2 in ((0, 2), (2, 3)):
            assert max(m for m, b in zip(sorted(per_step), flat) if b == b1) < min(
                m for m, b in zip(sorted(per_step), flat) if b == b2)


def test_resume_yields_identical_schedule():
    assert run_ranks(SIZES, 2, 2, resume_after=None) == run_ranks(SIZES, 2, 2, resume_after=2)


def test_shuffle_within_bucket_is_seeded_and_per_epoch():
    a = BucketOrderedSampler([50], 5, 1, 0, seed=1, epochs=2)
    b = BucketOrderedSampler([50], 5, 1, 0, seed=1, epochs=2)
    c = BucketOrderedSampler([50], 5, 1, 0, seed=2, epochs=2)
    assert a.plan(0) == b.plan(0)
    assert a.plan(0) != c.plan(0)
    assert a.plan(0) != a.plan(1)
    assert [s for st in a.plan(0) for s in st[0]] != list(range(50))  # actually shuffled


def test_padding_slots_counted_and_spread():
    s = BucketOrderedSampler([5, 3], micro_batch_size=2, num_replicas=2, rank=0, seed=0, epochs=1)
    assert s.micro_steps_per_epoch() == 2 + 1
    assert s.padding_slots_per_epoch() == 3 + 1
    for step in s.plan(0):
        assert all(len(r) == 2 for r in step)


def run_elastic(sizes, micro, before, after, steps_before, accum_before=2, accum_after=2, seed=3, epochs=2):
    """`before` ranks run `steps_before` optimizer steps, then `after` ranks resume from rank 0's state_dict."""
    samplers = [BucketOrderedSampler(sizes, micro, before, r, seed, epochs) for r in range(before)]
    events = []
    for _ in range(steps_before):
        first = samplers[0].state.micro_step
        groups = [s.next_group(accum_before) for s in samplers]
        events += [(e, first + j, r, g[j]) for r, (e, g) in enumerate(groups) for j in range(len(g))]
    state = samplers[0].state_dict()
    resumed = [BucketOrderedSampler(sizes, micro, after, r, seed, epochs) for r in range(after)]
    for s in resumed:
        s.load_state_dict(state)
    assert resumed[0].resharded_from["num_replicas"] == before
    steps_left = resumed[0].remaining_steps(accum_after)
    n = 0
    while not resumed[0].done():
        first = resumed[0].state.micro_step
        groups = [s.next_group(accum_after) for s in resumed]
        assert len({g[0] for g in groups}) == 1 and len({len(g[1]) for g in groups}) == 1
        events += [(e, first + j, r, g[j]) for r, (e, g) in enumerate(groups) for j in range(len(g))]
        n += 1
    assert n == steps_left  # remaining_steps predicts the resumed run's length exactly
    return events, state


@pytest.mark.parametrize("before,after,steps_before", [(2, 1, 3), (2, 4, 3), (2, 3, 1), (4, 2, 2), (2, 1, 9)])
def test_elastic_resume_exactly_once_in_bucket_order(before, after, steps_before):
    events, state = run_elastic(SIZES, 2, before, after, steps_before)
    assert state["position"] > 0 or state["epoch"] > 0
    for epoch in (0, 1):
        ev = [e for e in events if e[0] == epoch]
        real = sorted(s for e in ev for s in e[3] if s >= 0)
        assert real == list(range(sum(SIZES))), f"epoch {epoch}: not exactly once"
        per_step = {}
        for _, m, _, slots in ev:
            per_step.setdefault(m, set()).update(bucket_of(s if s >= 0 else -s - 1, SIZES) for s in slots)
        assert all(len(b) == 1 for b in per_step.values())  # a micro step never mixes buckets
        flat = [next(iter(per_step[m])) for m in sorted(per_step)]
        assert flat == sorted(flat)  # buckets in order, across the change of world size


def test_elastic_position_is_the_global_sample_count():
    samplers = [BucketOrderedSampler([11, 7], 2, 2, r, seed=0, epochs=1) for r in range(2)]
    for s in samplers:
        s.next_group(2)  # 2 micro steps x 2 ranks x 2 = 8 samples of bucket 0
    assert samplers[0].state_dict()["position"] == 8
    one = BucketOrderedSampler([11, 7], 2, 1, 0, seed=0, epochs=1)
    one.load_state_dict(samplers[0].state_dict())
    _, group = one.next_group(1)
    left = [int(x) for x in samplers[0].bucket_permutation(0, 0)[8:]]
    assert group[0] == left[:2]  # continues with the 9th sample of the epoch's order of bucket 0
    assert one.state.micro_step == 3  # micro steps keep counting from the old run's 2


def test_resume_with_other_seed_or_data_is_refused():
    s = BucketOrderedSampler([10], 2, 2, 0, seed=0, epochs=1)
    with pytest.raises(TrainError, match="seed"):
        BucketOrderedSampler([10], 2, 1, 0, seed=1, epochs=1).load_state_dict(s.state_dict())
    with pytest.raises(TrainError, match="bucket_sizes"):
        BucketOrderedSampler([9], 2, 2, 0, seed=0, epochs=1).load_state_dict(s.state_dict())


def test_dataset_reads_buckets_in_manifest_order_and_masks_padding(tmp_path):
    from cpt.testing import make_bucket_dataset

    root = make_bucket_dataset(tmp_path / "ds", [4, 3], vocab_size=64, seed=1)
    ds = BucketedDataset(root)
    assert ds.bucket_sizes == [4, 3] and len(ds) == 7
    assert ds[5]["bucket"] == 1
    pad = ds.fetch(-6)
    assert pad["padding"] and set(pad["labels"]) == {IGNORE_INDEX}
    assert pad["input_ids"] == ds[5]["input_ids"]


def test_collator_pads_resets_positions_and_blocks_cross_document():
    rows = [{"input_ids": [5, 6, 7, 8, 9], "labels": [5, 6, 7, 8, 9], "doc_lengths": [2, 3]},
            {"input_ids": [5, 6, 7], "labels": [-100, 6, 7], "doc_lengths": [3]}]
    plain = Collator(pad_token_id=0, use_doc_lengths=False, cross_document_attention=True)(rows)
    assert plain["input_ids"][1].tolist() == [5, 6, 7, 0, 0]
    assert plain["labels"][1].tolist() == [-100, 6, 7, -100, -100]
    assert plain["attention_mask"][1].tolist() == [1, 1, 1, 0, 0]
    docs = Collator(use_doc_lengths=True, cross_document_attention=False)(rows)
    assert docs["position_ids"].tolist() == [[0, 1, 0, 1, 2], [0, 1, 2, 0, 1]]
    allowed = docs["attention_mask"][0, 0] == 0
    assert allowed[3].tolist() == [False, False, True, True, False]  # doc 2 token sees only doc 2, causally
    assert allowed[1].tolist() == [True, True, False, False, False]
    fa2 = Collator(use_doc_lengths=True, cross_document_attention=False, attention_impl="flash_attention_2")(rows)
    assert "attention_mask" not in fa2


def test_collator_mask_matches_separate_documents():
    """A packed sequence with no cross-document attention gives the same logits as each document alone."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=4),).eval()
    rows = [{"input_ids": [5, 6, 7, 8, 9], "labels": [5, 6, 7, 8, 9], "doc_lengths": [2, 3]}]
    batch = Collator(use_doc_lengths=True, cross_document_attention=False)(rows)
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       position_ids=batch["position_ids"]).logits[0]
        doc2 = model(input_ids=torch.tensor([[7, 8, 9]])).logits[0]
    torch.testing.assert_close(packed[2:], doc2, rtol=1e-4, atol=1e-5)
