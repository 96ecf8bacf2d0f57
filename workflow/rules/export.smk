# export: optional GGUF files of trained stages for llama.cpp / Ollama (config `export.gguf`, off by default), with
# llama.cpp's own converter from the pinned llama-cpp-python sdist. Library: cpt.model.gguf_export. Same step:
#   cpt export-gguf --model results/<exp>/train/<stage>/final --out results/<exp>/export/<stage>.gguf \
#       --pre-tokenizer-from results/<exp>/tokenizer/base


rule export_gguf:
    input:
        model=lambda wildcards: str(L.final(wildcards.stage)),
        # an extended byte-level BPE declares the base tokenizer's pre-tokenizer (ignored for SentencePiece)
        base_tokenizer=str(L.tokenizer_base),
        converter=str(archive_file("llama-cpp-python")),
    output:
        str(L.gguf("{stage}")),
    log:
        logfile("export_gguf", "{stage}"),
    wildcard_constraints:
        stage="|".join(STAGES),
    conda:
        CONDA_ENV
    threads: threads_of("export")
    resources:
        **resources_of("export"),
    params:
        section=config["export"]["gguf"],
    script:
        "../scripts/export_gguf.py"


if config["export"]["gguf"]["enabled"]:
    TARGETS.extend(str(L.gguf(stage)) for stage in cptconfig.gguf_stages(config))
