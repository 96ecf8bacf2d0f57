# train: one ColossalAI run per stage (wildcard `stage`), chained by `init_from` in config (train.stages).
# Library: cpt.train (trainer), cpt.train.stage (stale checkpoints, launch). Same without Snakemake:
#   python -m cpt.train.launch --standalone --nproc_per_node 2 -- --config C --model M --dataset D --output O


def train_model_input(wildcards):
    return str(L.model_source(config["train"]["stages"][wildcards.stage]["init_from"]))


rule train:
    input:
        model=train_model_input,
        dataset=lambda wildcards: str(L.dataset(wildcards.stage)),
    output:
        directory(str(L.final("{stage}"))),
    params:
        section=lambda wildcards: cptconfig.stage_section(config, wildcards.stage),
        nproc=cptconfig.rule_resources(config, "train").get("nproc_per_node", 1),
    wildcard_constraints:
        stage="|".join(STAGES),
    log:
        logfile("train", "{stage}"),
    threads: cptconfig.rule_resources(config, "train").get("nproc_per_node", 1)
    resources:
        **rule_resources("train"),
    script:
        "../scripts/train_stage.py"


TARGETS.extend(str(L.final(stage)) for stage in STAGES)
