"""Rebuilding a dataset in place (issue 24, item 4): a rebuild killed half-way leaves no manifest (removed before
the buckets are touched), and an old manifest beside new buckets is refused: the manifest lists every bucket file
(sizes, hashes of the small ones) and the trainer's reader checks it."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from _dataset_support import build_tokenizer, random_corpus

from cpt.core.errors import DatasetError
from cpt.dataset import build
from cpt.dataset.build import prepare_stage
from cpt.testing import make_bucket_dataset
from cpt.train.data import BucketedDataset


def test_old_manifest_beside_new_buckets_is_refused(tmp_path):
    ds = make_bucket_dataset(tmp_path / "ds", [6, 4], vocab_size=64, seed=1)
    assert len(BucketedDataset(ds).offsets) == 3
    other = make_bucket_dataset(tmp_path / "other", [12], vocab_size=64, seed=2)
    shutil.rmtree(ds / "bucket-00000")
    shutil.copytree(other / "bucket-00000", ds / "bucket-00000")  # a new bucket, the old manifest
    with pytest.raises(DatasetError, match=r"manifest\.json: the dataset's files do not match its manifest \(\d+ "
                                           r"difference\(s\): bucket-00000/"):
        BucketedDataset(ds)


def test_a_rebuild_killed_half_way_leaves_no_dataset_to_read(tmp_path, monkeypatch):
    tok = build_tokenizer(tmp_path / "tok")
    random_corpus(tmp_path / "c.jsonl", 60, seed=1, categories=("zh_news", "en_book"), max_chars=200)
    cfg = {"max_length": 64, "num_bins": 2, "seed": 3, "stages": {"s": {}}}
    out = tmp_path / "s"
    first = prepare_stage([tmp_path / "c.jsonl"], tok, out, cfg, "s", progress=False)
    assert len(first["buckets"]) == 2 and BucketedDataset(out).offsets[-1] == first["num_sequences"]
    old_manifest = (out / "manifest.json").read_bytes()

    real = build.write_bucket
    calls = []

    def killed_after_one_bucket(*args, **kwargs):
        if calls:
            raise KeyboardInterrupt("kill -9 stand-in")
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(build, "write_bucket", killed_after_one_bucket)
    random_corpus(tmp_path / "c.jsonl", 120, seed=2, categories=("zh_news", "en_book"), max_chars=200)
    with pytest.raises(KeyboardInterrupt):
        prepare_stage([tmp_path / "c.jsonl"], tok, out, cfg, "s", progress=False)
    with pytest.raises(DatasetError, match=r"manifest\.json: missing"):
        BucketedDataset(out)
    (out / "manifest.json").write_bytes(old_manifest)  # even the old manifest put back does not fit the new bucket
    with pytest.raises(DatasetError, match=r"do not match its manifest"):
        BucketedDataset(out)


def test_a_full_disk_during_prepare_is_one_named_error(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs (a real full disk) needs root; CI runs as root")
    tok = build_tokenizer(tmp_path / "tok")
    random_corpus(tmp_path / "c.jsonl", 200, seed=1, categories=("zh_news", "en_book"), max_chars=400)
    disk = tmp_path / "disk"
    disk.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    try:
        out = disk / "s"
        with pytest.raises(DatasetError, match=rf"{out}: no space left on device \(ENOSPC\) while writing dataset "
                                               r"stage 's' \([\d,]+ of [\d,]+ bytes free\); the partial buckets "
                                               r"were removed"):
            prepare_stage([tmp_path / "c.jsonl"], tok, out, {"max_length": 64, "num_bins": 2, "seed": 3,
                                                            "stages": {"s": {}}}, "s", progress=False)
        assert not (out / "manifest.json").exists() and not list(out.glob("bucket-*"))
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)
