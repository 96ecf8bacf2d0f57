from cpt.artifacts.corpus import language_files
from cpt.tokenizer import compression_report
from cpt.workflow.smk import plain, run

run(snakemake, lambda s: compression_report(  # noqa: F821
    plain(s.params.section), s.input.base, s.input.extended,
    language_files(s.input.heldout, plain(s.params.langs), "zh"),
    language_files(s.input.heldout, plain(s.params.langs), "en"), s.output.json))
