from cpt.model.base import write_base_check
from cpt.workflow.smk import plain, run

run(snakemake, lambda s: write_base_check(plain(s.params.section), s.input.tokenizer, s.output[0]))  # noqa: F821
