from cpt.evaluate.run import evaluate_point
from cpt.workflow.smk import plain, run

run(snakemake, lambda s: evaluate_point(  # noqa: F821
    s.input.model, s.output[0], plain(s.params.section), heldout_dir=s.input.get("heldout"),
    languages=plain(s.params.langs), idioms_dir=s.input.get("idioms"), threads=s.threads))
