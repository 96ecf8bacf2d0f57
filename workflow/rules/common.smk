# Helpers shared by every rule file (the Snakefile put src/ on sys.path and validated the config): the layout,
# per-rule params (exactly the rule's own config section) and resources (config `resources:`).
from pathlib import Path

from cpt import config as cptconfig

cptconfig.check_local_paths(config)

EXP = config["experiment"]
L = cptconfig.Layout(config)  # results/<experiment>/... paths
STAGES = cptconfig.stage_names(config)
TARGETS = []  # rule files append their final outputs; `rule all` requests them
SCRIPTS = Path(workflow.basedir, "workflow", "scripts")


def logfile(rule, *parts):
    """logs/<experiment>/<rule>[-<part>...].log"""
    return str(Path("logs", EXP, "-".join([rule, *parts]) + ".log"))


def rule_resources(rule):
    """Snakemake resources of a rule from config `resources` (default + per-rule), named as the SLURM plugin wants;
    the training rule gets one task per node and runs its own srun + torchrun (cpt.launch)."""
    from cpt.launch import rule_resources as slurm_resources

    return slurm_resources(config.get("resources", {}), rule, distributed=(rule == "train"))


def rule_threads(rule):
    r = cptconfig.rule_resources(config, rule)
    return r.get("cpus", r.get("cpus_per_task", 1))


# How a rule file looks (workflow/rules/<stage>.smk); scripts are thin (workflow/scripts/<stage>_<what>.py):
#
#   rule tokenizer_base:
#       output:    directory(str(L.tokenizer_base))        # paths come from cpt.config.Layout (L)
#       params:    section=config["tokenizer"]             # exactly the rule's own config section
#       log:       logfile("tokenizer_base")
#       threads:   rule_threads("tokenizer")
#       resources: **rule_resources("tokenizer")
#       script:    "../scripts/tokenizer_base.py"
#
#   TARGETS.append(str(L.tokenizer_base))                  # if `snakemake` (no target) must build it
#
#   # workflow/scripts/tokenizer_base.py
#   from cpt.smk import plain, run
#   from cpt.tokenizer import build_base_tokenizer
#   run(snakemake, lambda s: build_base_tokenizer(plain(s.params.section), s.output[0]))
