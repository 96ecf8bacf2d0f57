from cpt.smk import plain, run
from cpt.tokenizer import compression_report
from cpt.tokenizer.stage import category_files

run(snakemake, lambda s: compression_report(  # noqa: F821
    plain(s.params.section), s.input.base, s.input.extended,
    category_files(s.input.heldout, plain(s.params.langs), "zh"),
    category_files(s.input.heldout, plain(s.params.langs), "en"), s.output.json))
