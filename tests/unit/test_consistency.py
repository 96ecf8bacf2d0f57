"""cpt.artifacts.identity: one identity of a tokenizer (its vocabulary), and one clear error when model, tokenizer and
dataset do not belong together."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _dataset_support import build_tokenizer

from cpt.artifacts.identity import check_dataset_model, require_tokenizer, tokenizer_identity
from cpt.core.errors import DatasetError, TokenizerError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    """Two real SentencePiece tokenizers of different sizes, each as a full HF directory (with tokenizer.json)."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    from cpt.tokenizer.hf import save_hf_tokenizer

    root = tmp_path_factory.mktemp("toks")
    out = {}
    for name, size in (("small", 1000), ("large", 1300)):
        raw = build_tokenizer(root / f"{name}-raw", vocab_size=size)
        proto = pb.ModelProto()
        proto.ParseFromString((raw / "tokenizer.model").read_bytes())
        out[name] = save_hf_tokenizer(proto, root / name)
    return out


def test_identity_is_the_vocabulary_whichever_file_holds_it(tokenizers, tmp_path):
    full = tokenizer_identity(tokenizers["small"])
    assert full["source"] == "tokenizer.json" and set(full["files"]) == {"tokenizer.json", "tokenizer.model"}
    only_sp = tmp_path / "sp"
    only_sp.mkdir()
    shutil.copy(tokenizers["small"] / "tokenizer.model", only_sp / "tokenizer.model")
    sp = tokenizer_identity(only_sp)
    assert sp["source"] == "tokenizer.model"
    assert (sp["vocab_size"], sp["vocab_sha256"]) == (full["vocab_size"], full["vocab_sha256"])
    other = tokenizer_identity(tokenizers["large"])
    assert other["vocab_sha256"] != full["vocab_sha256"] and other["vocab_size"] > full["vocab_size"]


def test_empty_tokenizer_directory_is_one_short_error(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_text('{"source": "", "target": "some text", "category": "en"}\n')
    with pytest.raises(TokenizerError) as e:
        require_tokenizer(tmp_path / "empty")
    assert str(tmp_path / "empty") in str(e.value) and "tokenizer.json nor tokenizer.model" in str(e.value)
    r = subprocess.run([sys.executable, "-m", "cpt.cli", "prepare-pretrain", "--data_input_dirs", str(tmp_path / "in"),
                        "--tokenizer_dir", str(tmp_path / "empty"), "--data_output_dirs", str(tmp_path / "o")],
                       capture_output=True, text=True, env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin"},
                       timeout=120)
    assert r.returncode == 2 and "tokenizer.json nor tokenizer.model" in r.stderr
    assert len(r.stderr) < 600, r.stderr  # not kilobytes of model types


def _model_dir(path: Path, vocab: int, tokenizer: Path | None = None, unpadded: int | None = None) -> Path:
    path.mkdir(parents=True)
    cfg = {"model_type": "llama", "vocab_size": vocab}
    if unpadded:
        cfg["cpt_tokenizer_vocab_size"] = unpadded
    (path / "config.json").write_text(json.dumps(cfg))
    if tokenizer is not None:
        for f in tokenizer.iterdir():
            shutil.copy(f, path / f.name)
    return path


def test_dataset_tokenized_with_another_tokenizer_is_refused(tokenizers, tmp_path):
    small, large = tokenizers["small"], tokenizers["large"]
    n_small, n_large = tokenizer_identity(small)["vocab_size"], tokenizer_identity(large)["vocab_size"]
    manifest = {"tokenizer": str(small), "tokenizer_identity": tokenizer_identity(small)}
    good = _model_dir(tmp_path / "good", n_small, small)
    assert "= the dataset's" in check_dataset_model(tmp_path / "ds", manifest, good)
    wrong = _model_dir(tmp_path / "wrong", n_large, large)  # larger vocabulary: the id check alone would pass
    with pytest.raises(DatasetError) as e:
        check_dataset_model(tmp_path / "ds", manifest, wrong)
    msg = str(e.value)
    assert str(tmp_path / "ds" / "manifest.json") in msg and str(wrong) in msg
    assert f"{n_small:,} ids" in msg and f"{n_large:,} ids" in msg
    padded = _model_dir(tmp_path / "padded", n_small + 64, small, unpadded=n_small)
    check_dataset_model(tmp_path / "ds", manifest, padded)
    bare = _model_dir(tmp_path / "bare", n_small - 1)  # no tokenizer files: sizes only
    with pytest.raises(DatasetError, match="embedding rows"):
        check_dataset_model(tmp_path / "ds", manifest, bare)


@pytest.mark.slow
def test_cpt_train_refuses_a_dataset_of_another_tokenizer(tokenizers, tmp_path):
    """The issue's case: a dataset tokenized with the smaller tokenizer, a model with the larger one (so every id
    is < the vocabulary): one clear error before any step, nothing written."""
    from _dataset_support import random_corpus

    from cpt.dataset.build import prepare_stage
    from cpt.testing import make_tiny_model

    small, large = tokenizers["small"], tokenizers["large"]
    (tmp_path / "in").mkdir()
    random_corpus(tmp_path / "in" / "c.jsonl", 40, seed=3)
    ds = tmp_path / "ds"
    prepare_stage([tmp_path / "in"], small, ds, {"max_length": 64, "num_bins": 1, "seed": 1, "stages": {"s": {}}},
                  "s", progress=False)
    model = make_tiny_model(tmp_path / "model", vocab_size=tokenizer_identity(large)["vocab_size"], hidden=16,
                            layers=1, heads=2)
    for f in large.iterdir():
        shutil.copy(f, model / f.name)
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "cpt.train", "--model", str(model), "--dataset", str(ds), "--output",
                        str(out), "--set", "plugin=ddp", "--set", "precision=fp32", "--no-progress"],
                       capture_output=True, text=True, timeout=300,
                       env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin", "OMP_NUM_THREADS": "1"})
    assert r.returncode == 2, r.stderr[-3000:]
    assert f"{ds / 'manifest.json'}: the dataset was tokenized with {small}" in r.stderr
    assert str(model) in r.stderr
    assert not (out / "checkpoints").exists() and not (out / "metrics.jsonl").exists()
