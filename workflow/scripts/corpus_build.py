from cpt.corpus import build_corpus
from cpt.workflow.smk import plain, run

run(snakemake, lambda s: build_corpus(plain(s.params.section), s.output[0], progress=False))  # noqa: F821
