from cpt.model.init import heldout_by_lang, run_init
from cpt.workflow.smk import plain, run

run(snakemake, lambda s: run_init(  # noqa: F821
    plain(s.params.section), s.input.model, s.input.old_tokenizer, s.input.new_tokenizer, s.output[0],
    heldout_by_lang(s.input.heldout, plain(s.params.langs))))
