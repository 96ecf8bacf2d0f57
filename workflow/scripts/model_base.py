from cpt.model.base import build_base_model
from cpt.workflow.smk import plain, run

run(snakemake, lambda s: build_base_model(plain(s.params.section), s.input.tokenizer, s.output[0]))  # noqa: F821
