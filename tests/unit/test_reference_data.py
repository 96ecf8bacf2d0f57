"""`cpt train` on the output of the reference's prepare_pretrain_dataset.py: part-* directories (input_ids, labels)
under arrow/, no manifest. Parts become buckets in order; types are checked; the manifest goes beside the run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cpt.core.errors import DatasetError
from cpt.testing import make_tiny_model
from cpt.train.reference_data import FORMAT, reference_manifest, reference_parts

REPO = Path(__file__).resolve().parents[2]


def reference_output(root: Path, sizes, vocab: int = 128, length: int = 24, labels_as=None) -> Path:
    """A directory as prepare_pretrain_dataset.py leaves it: cache/, jsonl/part-NNNNN.jsonl and
    arrow/part-NNNNN (datasets.load_dataset("json", ...).save_to_disk, as the reference saves each part)."""
    import datasets

    for sub in ("cache", "jsonl", "arrow"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for p, n in enumerate(sizes):
        name = f"part-{p:05d}"
        jsonl = root / "jsonl" / f"{name}.jsonl"
        with open(jsonl, "w", encoding="utf-8") as f:
            for i in range(n):
                ids = [1] + [3 + (p * 31 + i * 7 + k) % (vocab - 3) for k in range(length - 1 - i % 5)]
                labels = [-100] * 3 + ids[3:] if labels_as is None else [labels_as(t) for t in ids]
                f.write(json.dumps({"input_ids": ids, "labels": labels}) + "\n")
        ds = datasets.load_dataset("json", data_files=[str(jsonl)], cache_dir=str(root / "cache" / "spliced"),
                                   split="train")
        ds.save_to_disk(str(root / "arrow" / name))
    return root


def tree(root: Path) -> dict:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


def test_parts_in_order_become_buckets_and_are_checked(tmp_path):
    root = reference_output(tmp_path / "out", [5, 3, 4])
    assert [p.name for p in reference_parts(root)] == ["part-00000", "part-00001", "part-00002"]
    assert reference_parts(root / "arrow") == reference_parts(root)  # the arrow/ directory itself works too
    manifest, parts = reference_manifest(root)
    assert manifest["format"] == FORMAT and [len(p) for p in parts] == [5, 3, 4]
    assert [Path(b).name for b in manifest["buckets"]] == ["part-00000", "part-00001", "part-00002"]
    assert manifest["sequences"] == 12 and manifest["longest"] == 24 and manifest["max_token_id"] < 128
    assert reference_parts(tmp_path / "out" / "jsonl") == []


def test_bad_parts_name_the_part_and_column(tmp_path):
    import datasets

    root = reference_output(tmp_path / "floats", [3], labels_as=float)
    with pytest.raises(DatasetError, match=r"part-00000: column labels is list<item: double>, expected a list of"):
        reference_manifest(root)
    part = tmp_path / "nolabels" / "arrow" / "part-00000"
    datasets.Dataset.from_dict({"input_ids": [[1, 2, 3]]}).save_to_disk(str(part))
    with pytest.raises(DatasetError, match=r"part-00000: missing column\(s\) \['labels'\]"):
        reference_manifest(tmp_path / "nolabels")
    with pytest.raises(DatasetError, match="neither manifest.json"):
        reference_manifest(tmp_path / "floats" / "jsonl")


@pytest.mark.slow
def test_cpt_train_accepts_a_reference_output_and_leaves_it_untouched(tmp_path):
    data = reference_output(tmp_path / "data_output_dirs", [8, 4])
    before = tree(data)
    model = make_tiny_model(tmp_path / "model", vocab_size=128, hidden=32, layers=2, seed=3)
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO / "src"))
    r = subprocess.run([sys.executable, "-m", "cpt.cli", "train", "--model", str(model), "--dataset", str(data),
                        "--output", str(out), "--set", "plugin=ddp", "--set", "precision=fp32",
                        "--set", "micro_batch_size=4", "--set", "warmup_steps=0", "--no-progress"],
                       env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert r.returncode == 0, r.stderr[-4000:]
    assert tree(data) == before  # nothing written into the user's data
    manifest = json.loads((out / "dataset_manifest.json").read_text(encoding="utf-8"))
    assert [p["name"] for p in manifest["parts"]] == ["part-00000", "part-00001"]
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]  # 8 + 4 sequences, 4 per step, one epoch: every part trained once
    assert (out / "final" / "config.json").is_file()
