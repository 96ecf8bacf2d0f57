from pathlib import Path

from cpt.launch import stage_launcher
from cpt.smk import plain, run
from cpt.train.stage import run_stage

run(snakemake, lambda s: run_stage(plain(s.params.section), s.input.model, s.input.dataset,  # noqa: F821
                                    Path(s.output[0]).parent, nproc=s.params.nproc,
                                    launcher=stage_launcher(s.resources, plain(s.config.get("launch")))))
