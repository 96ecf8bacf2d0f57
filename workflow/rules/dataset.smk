# dataset: per training stage, ordered buckets of packed sequences (+ manifest.json, selection.arrow).
# Library: cpt.dataset.build (prepare_stage: tokenize, select, bin, bucket, pack, shuffle, write). Same step
# without Snakemake: cpt prepare-pretrain / cpt prepare-sft --config config/config.yaml --stage <stage> ...


rule dataset_stage:
    input:
        unpack(IN.dataset),
    output:
        directory(str(L.dataset("{stage}"))),
    log:
        logfile("dataset", "{stage}"),
    wildcard_constraints:
        stage="|".join(STAGES) if STAGES else "^$",
    conda:
        CONDA_ENV
    threads: threads_of("dataset")
    resources:
        **resources_of("dataset"),
    params:
        section=lambda wildcards: cptconfig.dataset_config(config, wildcards.stage),
        # sft stages read the training conversations only (corpus/sft/train.jsonl), not the held-out ones
        data_files=IN.dataset_files,
        replay_from=IN.dataset_replay_from,
    script:
        "../scripts/dataset_stage.py"


TARGETS.extend([str(L.dataset(s)) for s in STAGES])
