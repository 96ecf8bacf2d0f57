# The Colossal-LLaMA-2 recipe as a workflow. One rule file per recipe stage (workflow/rules/), all logic in the
# library (src/cpt/). Default experiment: config/config.yaml (tiny, CPU, real text); others: --configfile.
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

min_version("9.0")


# Software: with `--sdm apptainer` every job runs in this image, built from requirements.lock with
# `apptainer build workflow/envs/cpt.sif workflow/envs/cpt.def`; with `--sdm conda` each rule's `conda:` environment
# (workflow/envs/cpt.yaml) is used instead; without --sdm, the environment snakemake runs in (install.sh's .venv).
# See config/README.md, "Software environments".
container: "workflow/envs/cpt.sif"


# The embedded default applies only when no --configfile is given (Snakemake would otherwise deep-merge it into
# the user's experiment: its stages and categories would leak in).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


# The schema (workflow/schemas/, one file per section) is checked twice: by the library, which names every bad key
# in one message and fills in the section defaults, and by Snakemake's own validator.
sys.path.insert(0, str(Path(workflow.basedir, "src")))
from cpt.workflow.experiment import validate as cpt_validate  # noqa: E402
from cpt.core.yamlio import read_yaml  # noqa: E402

for _configfile in workflow.configfiles:  # Snakemake's own loader lets the last of two equal keys win silently
    read_yaml(_configfile)

config.update(cpt_validate(config, Path(workflow.basedir, "workflow/schemas/config.schema.yaml")))
validate(config, "workflow/schemas/config.schema.yaml")


# A checkout restored by `dvc pull` has file times in no particular order: align those of the outputs DVC confirms
# against dvc.lock (once; only where Snakemake has no metadata yet), so Snakemake does not plan them again.
if workflow.is_main_process:
    from cpt.workflow.dvc_checkout import align_checkout_mtimes  # noqa: E402

    align_checkout_mtimes(".", log=lambda m: print(m, file=sys.stderr))


include: "workflow/rules/common.smk"


# Final targets: every rule file appends what `snakemake` (no target) must produce.
rule all:
    default_target: True
    input:
        lambda wildcards: TARGETS,


# One rule file per recipe stage, all of them required: a missing file is an error here, not a stage that
# silently disappears from the DAG.
RULE_FILES = ("corpus", "clean", "tokenizer", "model", "dataset", "train", "evaluate", "report", "export")
_missing = [
    f"workflow/rules/{s}.smk"
    for s in RULE_FILES
    if not Path(workflow.basedir, "workflow", "rules", f"{s}.smk").is_file()
]
if _missing:
    raise WorkflowError(f"missing rule file(s): {', '.join(_missing)}; every recipe stage needs its rule file")

for _stage in RULE_FILES:

    include: f"workflow/rules/{_stage}.smk"
