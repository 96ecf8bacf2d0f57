# train: one ColossalAI run per stage (wildcard `stage`), chained by `init_from` in config (train.stages).
# Library: cpt.train (trainer), cpt.launch.stage (stale checkpoints, launch). Same without Snakemake:
#   python -m cpt.launch.torchrun --standalone --nproc_per_node 2 -- --config C --model M --dataset D --output O


def train_model_input(wildcards):
    return str(L.model_source(config["train"]["stages"][wildcards.stage]["init_from"]))


def train_checks(wildcards):
    """A user's local base model is read in place: train on it only once it was checked against the tokenizer."""
    source = config["train"]["stages"][wildcards.stage]["init_from"]
    if source == "base_model" and config["model"]["base"].get("kind") == "local":
        return [str(L.model_base_check)]
    return []


rule train:
    input:
        model=train_model_input,
        dataset=lambda wildcards: str(L.dataset(wildcards.stage)),
        checks=train_checks,
    output:
        directory(str(L.final("{stage}"))),
    params:
        section=lambda wildcards: cptconfig.stage_section(config, wildcards.stage),
        nproc=resources_of("train")["nproc_per_node"],
    wildcard_constraints:
        stage="|".join(STAGES),
    log:
        logfile("train", "{stage}"),
    threads: threads_of("train")
    resources:
        **resources_of("train"),
    script:
        "../scripts/train_stage.py"


TARGETS.extend(str(L.final(stage)) for stage in STAGES)
