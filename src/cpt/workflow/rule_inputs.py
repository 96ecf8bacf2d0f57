"""The input functions of the workflow's rules (workflow/rules/*.smk), one object per experiment.

Kept here rather than in the rule files: Snakemake's linter asks for rules and functions not to be mixed in one
snakefile, and as plain Python they are testable without Snakemake. Each method takes Snakemake's `wildcards`
(any object with the wildcard names as attributes) and returns paths as strings, as Snakemake expects.
"""

from __future__ import annotations

from pathlib import Path

from cpt.artifacts.layout import Layout
from cpt.core import config as cptconfig
from cpt.core.sources import inputs_of


class RuleInputs:
    def __init__(self, config: dict, layout: Layout | None = None):
        self.config = config
        self.layout = layout or Layout(config)

    # corpus
    def corpus_split(self, wildcards=None) -> str:
        """The split reads the cleaned corpus when the clean stage is on, else the raw one."""
        if self.config["clean"]["enabled"]:  # the validated config: every section's defaults filled in
            return str(self.layout.clean)
        return str(self.layout.corpus_raw)

    # dataset
    def dataset(self, wildcards) -> dict:
        config, L = self.config, self.layout
        st = cptconfig.dataset_stage(config, wildcards.stage)
        return {
            "data": str(L.corpus_sft) if st["kind"] == "sft" else str(L.corpus_train),
            "tokenizer": str(L.tokenizer(cptconfig.stage_tokenizer(config, wildcards.stage))),
            "replay": [str(L.dataset(s)) for s in cptconfig.replay_from(st)],
        }

    def dataset_files(self, wildcards) -> list[str]:
        """sft stages read the training conversations only (corpus/sft/train.jsonl), not the held-out ones."""
        if cptconfig.dataset_stage(self.config, wildcards.stage)["kind"] == "sft":
            return [str(self.layout.corpus_sft / "train.jsonl")]
        return [str(self.layout.corpus_train)]

    def dataset_replay_from(self, wildcards) -> dict[str, str]:
        return {Path(p).name: p for p in self.dataset(wildcards)["replay"]}

    # model
    def model_init_source(self, wildcards=None) -> str:
        """The model the init extends: a trained stage's final model (model.init.from_stage), else the base model."""
        stage = self.config["model"]["init"].get("from_stage")
        return str(self.layout.final(stage)) if stage else str(self.layout.model_base)

    # train
    def train_model(self, wildcards) -> str:
        return str(self.layout.model_source(self.config["train"]["stages"][wildcards.stage]["init_from"]))

    def train_checks(self, wildcards) -> list[str]:
        """A user's local base model is read in place: train on it only once it was checked against the tokenizer."""
        source = self.config["train"]["stages"][wildcards.stage]["init_from"]
        if source == "base_model" and self.config["model"]["base"].get("kind") == "local":
            return [str(self.layout.model_base_check)]
        return []

    # evaluate
    def eval_model(self, wildcards) -> str:
        return str(self.layout.model_source(wildcards.point))

    def evaluate(self, wildcards) -> dict:
        """The point's model; the benchmarks' data (pinned archives, path source:NAME, or the user's directories);
        the held-out text for bits per byte; the idiom set."""
        ev = self.config["evaluate"]
        inputs = {"model": self.eval_model(wildcards), "benchmarks": inputs_of(ev["benchmarks"])}
        if ev["bpb"]["enabled"]:
            inputs["heldout"] = str(self.layout.corpus_heldout)
        if ev["idioms"]["enabled"]:
            inputs["idioms"] = str(self.layout.idioms)
        return inputs
