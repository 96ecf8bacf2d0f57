# corpus: raw jsonl per category from real text (or the user's jsonl), the held-out split, demo SFT conversations.
# Library: cpt.corpus (build_corpus, split_corpus, build_idiom_sft). Same steps without Snakemake:
#   cpt build-corpus --config config/config.yaml [--sft-out DIR];  cpt split-corpus --in DIR --out DIR --config ...
from cpt.core.sources import IDIOM_DICTIONARY
from cpt.corpus.build import input_files

CORPUS_SFT = L.corpus_sft


rule corpus_raw:
    input:
        # the archives of the builtin categories' sources and the user's jsonl files
        sources=input_files(config["corpus"]),
    output:
        directory(str(L.corpus_raw)),
    log:
        logfile("corpus_raw"),
    conda:
        CONDA_ENV
    threads: threads_of("corpus")
    resources:
        **resources_of("corpus"),
    params:
        section={k: config["corpus"][k] for k in ("seed", "categories")},
    script:
        "../scripts/corpus_build.py"


rule corpus_split:
    input:
        IN.corpus_split,  # the cleaned corpus when the clean stage is on, else the raw one
    output:
        train=directory(str(L.corpus_train)),
        heldout=directory(str(L.corpus_heldout)),
    log:
        logfile("corpus_split"),
    conda:
        CONDA_ENV
    threads: threads_of("corpus")
    resources:
        **resources_of("corpus"),
    params:
        section=config["corpus"]["split"],
        langs=category_languages(config),
    script:
        "../scripts/corpus_split.py"


rule corpus_sft:
    input:
        idioms=str(archive_file(IDIOM_DICTIONARY[0])),
    output:
        directory(str(CORPUS_SFT)),
    log:
        logfile("corpus_sft"),
    conda:
        CONDA_ENV
    threads: threads_of("corpus")
    resources:
        **resources_of("corpus"),
    params:
        section=config["corpus"]["sft"],
    script:
        "../scripts/corpus_sft.py"


TARGETS.extend([str(L.corpus_train), str(L.corpus_heldout)])
if config["corpus"]["sft"]["enabled"]:
    TARGETS.append(str(CORPUS_SFT))
