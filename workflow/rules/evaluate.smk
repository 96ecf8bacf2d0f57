# evaluate: benchmarks (first-token logits over the answer letters, ColossalEval's method) and held-out bits per
# byte for each evaluation point: base_model, init (extended + initialised) and each training stage's final model.
# Library: cpt.evaluate (formats, idioms, prompts, scoring, bpb, run). Same steps without Snakemake:
#   cpt idioms-set --out DIR;  cpt evaluate --model DIR --out DIR --config config/config.yaml --heldout DIR
from cpt.core.sources import IDIOM_DICTIONARY
from cpt.evaluate.run import check_data_paths, evaluation_points

check_data_paths(config)  # a benchmark path given but wrong: one error naming its key, before any job runs
EVAL_POINTS = evaluation_points(config)


rule evaluate_idioms:
    input:
        idioms=str(archive_file(IDIOM_DICTIONARY[0])),
    output:
        directory(str(L.idioms)),
    log:
        logfile("evaluate_idioms"),
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **resources_of("evaluate"),
    params:
        section=config["evaluate"]["idioms"],
    script:
        "../scripts/evaluate_idioms.py"


rule evaluate:
    input:
        unpack(IN.evaluate),
    output:
        directory(str(L.evaluate("{point}"))),
    log:
        logfile("evaluate", "{point}"),
    wildcard_constraints:
        point="|".join(EVAL_POINTS),
    conda:
        CONDA_ENV
    threads: threads_of("evaluate")
    resources:
        **resources_of("evaluate"),
    params:
        # the section without `points` (adding an evaluation point must not rerun the others) and without
        # `generate` (rule evaluate_generate's own)
        section={k: v for k, v in config["evaluate"].items() if k not in ("points", "generate")},
        langs=category_languages(config),
    script:
        "../scripts/evaluate_point.py"


TARGETS.extend(str(L.evaluate(p)) for p in EVAL_POINTS)


rule evaluate_generate:
    input:
        model=IN.eval_model,
    output:
        directory(str(L.generations("{point}"))),
    log:
        logfile("evaluate_generate", "{point}"),
    wildcard_constraints:
        point="|".join(EVAL_POINTS),
    conda:
        CONDA_ENV
    threads: threads_of("evaluate")
    resources:
        **resources_of("evaluate"),
    params:
        section=config["evaluate"]["generate"],
        device=config["evaluate"].get("device"),
    script:
        "../scripts/evaluate_generate.py"


GENERATE_ON = config["evaluate"]["generate"]["enabled"]
if GENERATE_ON:
    TARGETS.extend(str(L.generations(p)) for p in EVAL_POINTS)
