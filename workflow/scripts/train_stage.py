from pathlib import Path

from cpt.launch.plan import stage_launcher
from cpt.launch.stage import run_stage
from cpt.workflow.smk import plain, run

run(snakemake, lambda s: run_stage(plain(s.params.section), s.input.model, s.input.dataset,  # noqa: F821
                                    Path(s.output[0]).parent, nproc=s.params.nproc,
                                    launcher=stage_launcher(s.resources, plain(s.config.get("launch")))))
