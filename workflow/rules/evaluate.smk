# evaluate: benchmarks (first-token logits over the answer letters, ColossalEval's method) and held-out bits per
# byte for each evaluation point: base_model, init (extended + initialised) and each training stage's final model.
# Library: cpt.evaluate (formats, idioms, prompts, scoring, bpb, run). Same steps without Snakemake:
#   cpt idioms-set --out DIR;  cpt evaluate --model DIR --out DIR --config config/config.yaml --heldout DIR
from cpt.core.sources import IDIOM_DICTIONARY
from cpt.evaluate.run import check_data_paths, evaluation_points

check_data_paths(config)  # a benchmark path given but wrong: one error naming its key, before any job runs
EVAL_POINTS = evaluation_points(config)
IDIOMS_ON = config["evaluate"]["idioms"]["enabled"]


def eval_model_dir(wildcards):
    return str(L.model_source(wildcards.point))


def eval_inputs(wildcards):
    # the benchmarks' data: pinned archives (path source:NAME) or the user's directories
    inputs = {"model": eval_model_dir(wildcards), "benchmarks": section_inputs(config["evaluate"]["benchmarks"])}
    if config["evaluate"]["bpb"]["enabled"]:
        inputs["heldout"] = str(L.corpus_heldout)
    if IDIOMS_ON:
        inputs["idioms"] = str(L.idioms)
    return inputs


rule evaluate_idioms:
    input:
        idioms=str(archive_file(IDIOM_DICTIONARY[0])),
    output:
        directory(str(L.idioms)),
    params:
        section=config["evaluate"]["idioms"],
    log:
        logfile("evaluate_idioms"),
    threads: 1
    resources:
        **resources_of("evaluate"),
    script:
        "../scripts/evaluate_idioms.py"


rule evaluate:
    input:
        unpack(eval_inputs),
    output:
        directory(str(L.evaluate("{point}"))),
    wildcard_constraints:
        point="|".join(EVAL_POINTS),
    params:
        # the section without `points` (adding an evaluation point must not rerun the others) and without
        # `generate` (rule evaluate_generate's own)
        section={k: v for k, v in config["evaluate"].items() if k not in ("points", "generate")},
        langs=category_languages(config),
    log:
        logfile("evaluate", "{point}"),
    threads: threads_of("evaluate")
    resources:
        **resources_of("evaluate"),
    script:
        "../scripts/evaluate_point.py"


TARGETS.extend(str(L.evaluate(p)) for p in EVAL_POINTS)


rule evaluate_generate:
    input:
        model=eval_model_dir,
    output:
        directory(str(L.generations("{point}"))),
    wildcard_constraints:
        point="|".join(EVAL_POINTS),
    params:
        section=config["evaluate"]["generate"],
        device=config["evaluate"].get("device"),
    log:
        logfile("evaluate_generate", "{point}"),
    threads: threads_of("evaluate")
    resources:
        **resources_of("evaluate"),
    script:
        "../scripts/evaluate_generate.py"


GENERATE_ON = config["evaluate"]["generate"]["enabled"]
if GENERATE_ON:
    TARGETS.extend(str(L.generations(p)) for p in EVAL_POINTS)
