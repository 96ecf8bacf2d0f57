from cpt.corpus import build_idiom_sft
from cpt.workflow.smk import plain, run

run(snakemake, lambda s: build_idiom_sft(plain(s.params.section), s.output[0]))  # noqa: F821
