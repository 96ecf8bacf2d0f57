from cpt.smk import plain, run
from cpt.tokenizer import build_base_tokenizer

run(snakemake, lambda s: build_base_tokenizer(plain(s.params.section), s.output[0]))  # noqa: F821
