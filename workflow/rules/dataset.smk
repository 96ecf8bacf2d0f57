# dataset: per training stage, ordered buckets of packed sequences (+ manifest.json, selection.arrow).
# Library: cpt.dataset.build (prepare_stage: tokenize, select, bin, bucket, pack, shuffle, write). Same step
# without Snakemake: cpt prepare-pretrain / cpt prepare-sft --config config/config.yaml --stage <stage> ...


def dataset_inputs(wildcards):
    st = cptconfig.dataset_stage(config, wildcards.stage)
    return {
        "data": str(L.corpus_sft) if st["kind"] == "sft" else str(L.corpus_train),
        "tokenizer": str(L.tokenizer(cptconfig.stage_tokenizer(config, wildcards.stage))),
        "replay": [str(L.dataset(s)) for s in cptconfig.replay_from(st)],
    }


rule dataset_stage:
    input:
        unpack(dataset_inputs),
    output:
        directory(str(L.dataset("{stage}"))),
    params:
        section=lambda wildcards: cptconfig.dataset_config(config, wildcards.stage),
        # sft stages read the training conversations only (corpus/sft/train.jsonl), not the held-out ones
        data_files=lambda wildcards: [str(L.corpus_sft / "train.jsonl")]
        if cptconfig.dataset_stage(config, wildcards.stage)["kind"] == "sft" else [str(L.corpus_train)],
        replay_from=lambda wildcards: {Path(p).name: p for p in dataset_inputs(wildcards)["replay"]},
    wildcard_constraints:
        stage="|".join(STAGES) if STAGES else "^$",
    log:
        logfile("dataset", "{stage}"),
    threads: threads_of("dataset")
    resources:
        **resources_of("dataset"),
    script:
        "../scripts/dataset_stage.py"


TARGETS.extend([str(L.dataset(s)) for s in STAGES])
