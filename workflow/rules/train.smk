# train: one ColossalAI run per stage (wildcard `stage`), chained by `init_from` in config (train.stages).
# Library: cpt.train (trainer), cpt.launch.stage (stale checkpoints, launch). Same without Snakemake:
#   python -m cpt.launch.torchrun --standalone --nproc_per_node 2 -- --config C --model M --dataset D --output O


rule train:
    input:
        model=IN.train_model,
        dataset=lambda wildcards: str(L.dataset(wildcards.stage)),
        checks=IN.train_checks,  # a local base model: its check first
    output:
        directory(str(L.final("{stage}"))),
    log:
        logfile("train", "{stage}"),
    wildcard_constraints:
        stage="|".join(STAGES),
    conda:
        CONDA_ENV
    threads: threads_of("train")
    resources:
        **resources_of("train"),
    params:
        section=lambda wildcards: cptconfig.stage_section(config, wildcards.stage),
        nproc=resources_of("train")["nproc_per_node"],
    script:
        "../scripts/train_stage.py"


TARGETS.extend(str(L.final(stage)) for stage in STAGES)
