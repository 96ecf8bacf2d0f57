from cpt.tokenizer import build_base_tokenizer
from cpt.workflow.smk import plain, run

run(snakemake, lambda s: build_base_tokenizer(plain(s.params.section), s.output[0]))  # noqa: F821
