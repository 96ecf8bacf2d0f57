# tokenizer: LLaMA-2 base (GGUF rebuild or local dir) -> new pieces from the zh TRAIN split -> extended tokenizer
# (every piece reachable, English unchanged) -> compression table on held-out text.
# Library: cpt.tokenizer (build_base_tokenizer, select_pieces, build_extended_tokenizer, compression_report).
# Same steps without Snakemake: cpt base-tokenizer | select-pieces | extend-tokenizer | compression (see --help).
TOK_LANGS = category_languages(config)


rule tokenizer_base:
    input:
        sources=section_inputs(config["tokenizer"]["base"]),  # the GGUF's archive or the local tokenizer
    output:
        directory(str(L.tokenizer_base)),
    log:
        logfile("tokenizer_base"),
    conda:
        CONDA_ENV
    threads: threads_of("tokenizer")
    resources:
        **resources_of("tokenizer"),
    params:
        section=config["tokenizer"]["base"],
    script:
        "../scripts/tokenizer_base.py"


rule tokenizer_pieces:
    input:
        base=str(L.tokenizer_base),
        train=str(L.corpus_train),
        # word lists (jieba, a GGUF vocabulary), a user's pieces file
        sources=section_inputs({k: config["tokenizer"][k] for k in ("candidates", "pieces_file")}),
    output:
        pieces=str(L.pieces),
        candidates=str(L.candidates),
    log:
        logfile("tokenizer_pieces"),
    conda:
        CONDA_ENV
    threads: threads_of("tokenizer")
    resources:
        **resources_of("tokenizer"),
    params:
        section={k: config["tokenizer"][k] for k in ("vocab_size", "candidates", "pieces_file", "seed")},
        langs=TOK_LANGS,
    script:
        "../scripts/tokenizer_pieces.py"


rule tokenizer_extended:
    input:
        base=str(L.tokenizer_base),
        pieces=str(L.pieces),
        candidates=str(L.candidates),
        train=str(L.corpus_train),
        heldout=str(L.corpus_heldout),
    output:
        directory(str(L.tokenizer_extended)),
    log:
        logfile("tokenizer_extended"),
    conda:
        CONDA_ENV
    threads: threads_of("tokenizer")
    resources:
        **resources_of("tokenizer"),
    params:
        section={k: config["tokenizer"][k] for k in ("vocab_size", "expansion")},
        langs=TOK_LANGS,
    script:
        "../scripts/tokenizer_extended.py"


rule tokenizer_compression:
    input:
        base=str(L.tokenizer_base),
        extended=str(L.tokenizer_extended),
        heldout=str(L.corpus_heldout),
    output:
        json=str(L.compression),
        md=str(L.compression_md),
    log:
        logfile("tokenizer_compression"),
    conda:
        CONDA_ENV
    threads: threads_of("tokenizer")
    resources:
        **resources_of("tokenizer"),
    params:
        section={"compression": config["tokenizer"]["compression"]},
        langs=TOK_LANGS,
    script:
        "../scripts/tokenizer_compression.py"


TARGETS.extend([str(L.tokenizer_base), str(L.tokenizer_extended), str(L.compression)])
