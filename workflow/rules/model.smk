# model: the base model (tiny seeded LLaMA, or the user's local LLaMA checked against the base tokenizer) and the
# initialised model (embeddings extended to the extended tokenizer; only the embedding tensors change).
# Library: cpt.model (base, init). Same steps without Snakemake:
#   cpt base-model --tokenizer results/<exp>/tokenizer/base --out results/<exp>/model/base [--kind local --path DIR]
#   cpt init-embeddings --source_model_and_tokenizer_path MODEL --target_tokenizer_path results/<exp>/tokenizer/extended
#                       --target_model_path results/<exp>/model/init [--method ...] [--pad-to-multiple-of 64]
MODEL_BASE_LOCAL = config["model"]["base"]["kind"] == "local"
MODEL_BASE_CHECK = L.model_base_check


if MODEL_BASE_LOCAL:

    rule model_base_check:
        input:
            tokenizer=str(L.tokenizer_base),
            model=section_inputs(config["model"]["base"]),  # the user's LLaMA-2 directory, read in place
        output:
            str(MODEL_BASE_CHECK),
        log:
            logfile("model_base_check"),
        conda:
            CONDA_ENV
        threads: threads_of("model")
        resources:
            **resources_of("model"),
        params:
            section=config["model"]["base"],
        script:
            "../scripts/model_base_check.py"

    TARGETS.append(str(MODEL_BASE_CHECK))

else:

    rule model_base:
        input:
            tokenizer=str(L.tokenizer_base),
            sources=section_inputs(config["model"]["base"]),  # a GGUF model's archive (kind gguf)
        output:
            directory(str(L.model_base)),
        log:
            logfile("model_base"),
        conda:
            CONDA_ENV
        threads: threads_of("model")
        resources:
            **resources_of("model"),
        params:
            section=config["model"]["base"],
        script:
            "../scripts/model_base.py"


rule model_init:
    input:
        model=IN.model_init_source,  # model.init.from_stage's final model, else the base
        old_tokenizer=str(L.tokenizer_base),
        new_tokenizer=str(L.tokenizer_extended),
        heldout=str(L.corpus_heldout),
        checked=[str(MODEL_BASE_CHECK)] if MODEL_BASE_LOCAL else [],
    output:
        directory(str(L.model_init)),
    log:
        logfile("model_init"),
    conda:
        CONDA_ENV
    threads: threads_of("model")
    resources:
        **resources_of("model"),
    params:
        section=config["model"]["init"],
        langs=category_languages(config),
    script:
        "../scripts/model_init.py"


TARGETS.append(str(L.model_init))
