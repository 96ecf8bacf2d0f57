"""The results layout: every path of one experiment under results/<experiment>/, in one place. Rules, verbs and
the report ask `Layout` instead of spelling paths.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

# The fixed paths of one experiment, relative to results/<experiment>/ (Layout.<name>)
PATHS = {
    "corpus_raw": "corpus/raw", "corpus_train": "corpus/train", "corpus_heldout": "corpus/heldout",
    "corpus_sft": "corpus/sft", "clean": "clean",
    "clean_work": "clean-work",  # per-category intermediate outputs of the clean stage (temporary)
    "tokenizer_base": "tokenizer/base", "pieces": "tokenizer/pieces.jsonl", "tokenizer_extended": "tokenizer/extended",
    "candidates": "tokenizer/candidates.jsonl",  # every candidate piece with its source and rank
    "compression_md": "tokenizer/compression.md",
    "compression": "tokenizer/compression.json",
    "model_base_check": "model/base_check.json",  # a user's local base model (read in place) matches the tokenizer
    "model_init": "model/init",
    "idioms": "evaluate/_idioms",  # the Chinese idiom benchmark, built once for every evaluation point
    "report": "report",
}


class Layout:
    """Every path of one experiment (relative to the working directory), in one place: the fixed ones of PATHS
    as attributes, and the per-stage ones as methods."""

    def __init__(self, config: Mapping[str, Any], root: str | Path = "results"):
        self.config = config
        self.root = Path(root) / config["experiment"]

    def __getattr__(self, name):
        if name in PATHS:
            return self.root / PATHS[name]
        raise AttributeError(f"Layout has no path {name!r}")  # a typo in a rule file

    def tokenizer(self, kind: str) -> Path:
        return self.tokenizer_base if kind == "base" else self.tokenizer_extended

    # model
    @property
    def model_base(self) -> Path:
        base = self.config["model"]["base"]
        if base.get("kind") == "local":
            return Path(base["path"])
        return self.root / "model" / "base"

    # dataset / train / evaluate
    def dataset(self, stage: str) -> Path:
        return self.root / "dataset" / stage

    def train(self, stage: str) -> Path:
        return self.root / "train" / stage

    def final(self, stage: str) -> Path:
        return self.train(stage) / "final"

    def gguf(self, stage: str) -> Path:
        """The optional GGUF of a stage's final model (config export.gguf)."""
        return self.root / "export" / f"{stage}.gguf"

    def model_source(self, source: str) -> Path:
        """The model directory a stage starts from (base_model, init or an earlier stage's final)."""
        if source == "base_model":
            return self.model_base
        if source == "init":
            return self.model_init
        return self.final(source)

    def evaluate(self, point: str) -> Path:
        return self.root / "evaluate" / point

    def generations(self, point: str) -> Path:
        return self.root / "generations" / point

    def clean_work(self, category: str) -> Path:
        return self.root / PATHS["clean_work"] / category

    def report_file(self, name: str) -> Path:
        return self.root / PATHS["report"] / name
