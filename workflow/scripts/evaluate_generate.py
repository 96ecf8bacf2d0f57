from cpt.evaluate.generate import generate_point
from cpt.workflow.smk import plain, run

run(snakemake, lambda s: generate_point(  # noqa: F821
    s.input.model, s.output[0], plain(s.params.section), device=s.params.device, threads=s.threads))
