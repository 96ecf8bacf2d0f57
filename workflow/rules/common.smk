# Helpers shared by the rule files, after the Snakefile put src/ on sys.path and validated the config. The layout,
# the rules' params (exactly each one's own config section) and resources (config `resources`). No rules here and
# no such text in comments either: `snakemake --lint` greps for both to find files that mix rules and functions.
from pathlib import Path

from cpt.artifacts.corpus import category_languages
from cpt.artifacts.layout import Layout
from cpt.core import config as cptconfig
from cpt.core.sources import archive_file, inputs_of
from cpt.launch import resources as cptlaunch
from cpt.workflow.rule_inputs import RuleInputs

cptconfig.check_local_paths(config)

EXP = config["experiment"]
L = Layout(config)  # results/<experiment>/... paths
STAGES = cptconfig.stage_names(config)
TARGETS = []  # rule files append their final outputs; `rule all` requests them
SCRIPTS = Path(workflow.basedir, "workflow", "scripts")
IN = RuleInputs(config, L)  # the rules' input functions (cpt.workflow.rule_inputs)
# Every rule's software: one pinned environment, generated from requirements.lock (`cpt software-env`), used
# only with `--sdm conda`; `--sdm apptainer` uses the Snakefile's `container:` instead (config/README.md).
CONDA_ENV = "../envs/cpt.yaml"


def section_inputs(section):
    """The files a config section makes its rule read (pinned source archives, the user's paths) -
    cpt.core.sources.inputs_of. Declared as the rule's input, so Snakemake and DVC see every dependency."""
    return inputs_of(section)


def logfile(rule, *parts):
    """logs/<experiment>/<rule>[-<part>...].log"""
    return str(Path("logs", EXP, "-".join([rule, *parts]) + ".log"))


def resources_of(section):
    """Snakemake resources of a rule from config `resources` (default + `resources.<section>`), named as the SLURM
    plugin wants: cpt.launch.resources.rule_resources, the one mapping (the training rule: one task per node, its own
    srun + torchrun, nproc_per_node = gpus_per_node unless set)."""
    return cptlaunch.rule_resources(config.get("resources", {}), section)


def threads_of(section):
    return cptlaunch.rule_threads(config.get("resources", {}), section)

# How each rule file looks (workflow/rules/<stage>.smk); scripts are thin (workflow/scripts/<stage>_<what>.py).
#
#   rule tokenizer_base    (the rule keyword, its name, a colon)
#       output:    directory(str(L.tokenizer_base))        # paths come from cpt.artifacts.layout.Layout (L)
#       params:    section=config["tokenizer"]             # exactly the rule's own config section
#       log:       logfile("tokenizer_base")
#       threads:   threads_of("tokenizer")
#       resources: **resources_of("tokenizer")
#       conda:     CONDA_ENV
#       script:    "../scripts/tokenizer_base.py"
#
#   TARGETS.append(str(L.tokenizer_base))                  # if `snakemake` (no target) must build it
#
#   # workflow/scripts/tokenizer_base.py
#   from cpt.workflow.smk import plain, run
#   from cpt.tokenizer import build_base_tokenizer
#   run(snakemake, lambda s: build_base_tokenizer(plain(s.params.section), s.output[0]))
