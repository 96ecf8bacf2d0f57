from cpt.dataset.build import prepare_stage
from cpt.workflow.smk import plain, run

run(snakemake, lambda s: prepare_stage(  # noqa: F821
    plain(s.params.data_files), s.input.tokenizer, s.output[0], plain(s.params.section), s.wildcards.stage,
    progress=False, prior=plain(s.params.replay_from)))
