# clean (optional, clean.enabled): normalise, filter, deduplicate and score the raw corpus per category.
# Library: cpt.clean (prepare per category, finalize once). Same without Snakemake:
#   cpt clean --in-dir results/<exp>/corpus/raw --out-dir results/<exp>/clean --config config/config.yaml
# On a cluster each clean_prepare (one per category, wildcard) is its own SLURM job through the profile; the
# cross-category dedup needs one LSH index over every signature, so clean_finalize is a second, single job.
if config["clean"]["enabled"]:
    CLEAN_CATEGORIES = sorted(config["corpus"]["categories"])

    rule clean_prepare:
        input:
            str(L.corpus_raw),
        output:
            temp(directory(str(L.clean_work("{category}")))),
        log:
            logfile("clean_prepare", "{category}"),
        wildcard_constraints:
            category="|".join(CLEAN_CATEGORIES),
        conda:
            CONDA_ENV
        threads: threads_of("clean")
        resources:
            **resources_of("clean"),
        params:
            section=config["clean"],
            langs=category_languages(config),
        script:
            "../scripts/clean_prepare.py"

    rule clean_finalize:
        input:
            expand(str(L.clean_work("{category}")), category=CLEAN_CATEGORIES),
        output:
            directory(str(L.clean)),
        log:
            logfile("clean_finalize"),
        conda:
            CONDA_ENV
        threads: 1
        resources:
            **resources_of("clean"),
        params:
            section=config["clean"],
            raw=str(L.corpus_raw),
        script:
            "../scripts/clean_finalize.py"
