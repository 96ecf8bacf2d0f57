"""cpt.workflow.dvc: grouping the Snakemake DAG's outputs into DVC stages (pure part; tests/dvc runs DVC)."""

from __future__ import annotations

import pytest

from cpt.core.errors import ConfigError
from cpt.workflow.dvc import assign_targets, dvc_yaml, groups_for

CFG = {
    "experiment": "x",
    "corpus": {}, "clean": {"enabled": False}, "tokenizer": {}, "model": {"base": {"kind": "tiny"}},
    "dataset": {"max_length": 512, "num_bins": 4,
                "stages": {"base": {}, "injection": {}, "replay": {"replay": {"from": ["base", "injection"]}}}},
    "train": {"defaults": {}, "stages": {"base": {"init_from": "base_model"}, "injection": {"init_from": "init"},
                                         "replay": {"init_from": "injection"}}},
    "evaluate": {}, "report": {},
}
OUTPUTS = [
    ("results/x/corpus/raw", "corpus_raw"), ("results/x/corpus/train", "corpus_split"),
    ("results/x/tokenizer/base", "tokenizer_base"), ("results/x/tokenizer/extended", "tokenizer_extend"),
    ("results/x/tokenizer/extended/tokenizer.model", "tokenizer_extend"),  # nested: not a target of its own
    ("results/x/model/base", "model_base"), ("results/x/model/init", "model_init"),
    ("results/x/clean-work/zh", "clean_prepare"),  # a temp() intermediate
    *[(f"results/x/dataset/{s}", "dataset") for s in ("base", "injection", "replay")],
    *[(f"results/x/train/{s}/final", "train") for s in ("base", "injection", "replay")],
    ("results/x/evaluate/replay", "evaluate"), ("results/x/report", "report"),
]


def test_groups_follow_the_stage_chain():
    groups = {g.name: g for g in assign_targets(groups_for(CFG), OUTPUTS)}
    assert list(groups) == ["corpus", "tokenizer", "model-base", "model-init", "dataset-base", "dataset-injection",
                            "dataset-replay", "train-base", "train-injection", "train-replay", "evaluate", "report"]
    assert groups["train-replay"].deps == ["results/x/dataset/replay", "results/x/train/injection/final"]
    assert groups["train-injection"].deps == ["results/x/dataset/injection", "results/x/model/init"]
    assert groups["train-base"].deps == ["results/x/dataset/base", "results/x/model/base"]
    assert groups["dataset-replay"].deps[-2:] == ["results/x/dataset/base", "results/x/dataset/injection"]
    assert "clean_prepare" in groups["corpus"].rules and not any("clean-work" in t for t in groups["corpus"].targets)
    assert groups["train-replay"].params == ["train.defaults", "train.stages.replay"]
    # a dataset stage reads the global dataset keys and its own stage entry, not the other stages'
    assert groups["dataset-replay"].params == ["dataset.max_length", "dataset.num_bins", "dataset.stages.replay"]
    assert groups["tokenizer"].targets == ["results/x/tokenizer/base", "results/x/tokenizer/extended"]
    assert groups["tokenizer"].rules == ["tokenizer_base", "tokenizer_extend"]
    assert "data/downloads" in groups["corpus"].deps


def test_missing_workflow_stages_are_left_out_and_unowned_outputs_are_errors():
    kept = assign_targets(groups_for(CFG), OUTPUTS[:2])
    assert [g.name for g in kept] == ["corpus"]
    with pytest.raises(ConfigError, match="results/x/elsewhere"):
        assign_targets(groups_for(CFG), [*OUTPUTS, ("results/x/elsewhere/a.json", "stray")])


def test_user_base_model_path_is_a_dependency_and_cmd_is_a_snakemake_call():
    cfg = {**CFG, "model": {"base": {"kind": "local", "path": "/models/llama-2-7b-hf"}, "init": {"from_stage": None}}}
    outputs = [o for o in OUTPUTS if o[0] != "results/x/model/base"] + [("results/x/model/base_check.json", "check")]
    groups = {g.name: g for g in assign_targets(groups_for(cfg), outputs)}
    assert "/models/llama-2-7b-hf" in groups["model-base"].deps
    assert groups["model-base"].outs == ["results/x/model/base_check.json"]
    assert "/models/llama-2-7b-hf" in groups["model-init"].deps  # init extends the user's weights
    assert "/models/llama-2-7b-hf" in groups["train-base"].deps
    groups = list(groups.values())
    doc = dvc_yaml(groups, "config/x.yaml")
    st = doc["stages"]["train-replay"]
    assert st["cmd"].startswith("snakemake --cores all --configfile config/x.yaml --allowed-rules train -- ")
    assert st["cmd"].endswith("results/x/train/replay/final")
    assert st["params"] == [{"config/x.yaml": ["train.defaults", "train.stages.replay"]}]
    assert st["outs"] == ["results/x/train/replay/final"]


def test_params_are_only_keys_written_in_the_config_file():
    groups = assign_targets(groups_for(CFG), OUTPUTS)
    raw = {"dataset": {"max_length": 512, "stages": {"replay": {}}}, "train": {"stages": {"replay": {}}}}
    doc = dvc_yaml(groups, "c.yaml", raw=raw)
    assert doc["stages"]["dataset-replay"]["params"] == [{"c.yaml": ["dataset.max_length", "dataset.stages.replay"]}]
    assert doc["stages"]["train-replay"]["params"] == [{"c.yaml": ["train.stages.replay"]}]
    assert "params" not in doc["stages"]["report"]  # no report section in the file


def test_stages_run_snakemake_with_the_experiments_profile_and_options_and_declare_metrics_and_plots():
    groups = assign_targets(groups_for(CFG), OUTPUTS)
    doc = dvc_yaml(groups, "config/x.yaml", profile="profiles/slurm", options=["--keep-going", "--jobs=8"])
    for st in doc["stages"].values():  # a cluster profile: `dvc repro` submits jobs, never `--cores all` locally
        assert st["cmd"].startswith("snakemake --profile profiles/slurm --keep-going --jobs=8 --configfile config/x.yaml "
                                    "--allowed-rules "), st["cmd"]
    assert "results/x/report/report.json" in doc["metrics"]
    assert {"results/x/evaluate/replay/bpb.json", "results/x/evaluate/replay/benchmarks.json"} <= set(doc["metrics"])
    plots = {k: v for p in doc["plots"] for k, v in p.items()}
    assert plots["bits_per_byte"]["y"] == {"results/x/report/bpb.csv": ["zh", "en"]}
    assert plots["loss"]["y"] == {"results/x/report/loss.csv": "loss"}


def test_a_config_snakemake_cannot_plan_is_an_error_that_says_why(tmp_path):
    import sys

    import pytest

    from cpt.core.errors import ConfigError
    from cpt.workflow.dvc import snakemake_outputs

    quiet = [sys.executable, "-c", "import sys; sys.exit(3)"]
    with pytest.raises(ConfigError, match=r"cannot plan c\.yaml for DVC: .* exited 3: no output at all"):
        snakemake_outputs("c.yaml", tmp_path, snakemake=quiet)
    loud = [sys.executable, "-c", "import sys; print('Building DAG'); print('MissingInputException: /models/llama "
            "is missing', file=sys.stderr); sys.exit(1)"]
    with pytest.raises(ConfigError, match="MissingInputException: /models/llama is missing"):
        snakemake_outputs("c.yaml", tmp_path, snakemake=loud)


def test_every_stage_depends_on_the_workflow_glue_and_what_it_imports():
    """The Snakefile and common.smk decide every rule's inputs, params and resources (through
    cpt.workflow.rule_inputs, cpt.launch.resources ...): a change to them must rerun every stage in DVC too."""
    doc = dvc_yaml(assign_targets(groups_for(CFG), OUTPUTS), "config/x.yaml")
    for name, stage in doc["stages"].items():
        deps = stage["deps"]
        assert {"Snakefile", "workflow/rules/common.smk"} <= set(deps), name
        assert {"src/cpt/workflow/rule_inputs.py", "src/cpt/launch/resources.py"} <= set(deps), name
        assert "src/cpt/workflow/dvc.py" not in deps, name  # generating dvc.yaml is not part of any rule


def test_the_optional_gguf_export_is_a_stage_of_its_own_when_enabled():
    assert "export" not in {g.name for g in groups_for(CFG)}  # off by default: no stage, no error
    cfg = {**CFG, "export": {"gguf": {"enabled": True, "stages": None, "outtype": "f16"}}}
    outputs = [*OUTPUTS, ("results/x/export/replay.gguf", "export_gguf")]
    groups = {g.name: g for g in assign_targets(groups_for(cfg), outputs)}
    assert groups["export"].targets == ["results/x/export/replay.gguf"]  # the last stage by default
    assert groups["export"].deps == ["results/x/tokenizer/base", "results/x/train/replay/final"]
