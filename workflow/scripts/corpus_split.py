from cpt.corpus import split_corpus
from cpt.workflow.smk import plain, run

run(snakemake, lambda s: split_corpus(s.input[0], None, plain(s.params.section), langs=plain(s.params.langs),  # noqa: F821
                                      progress=False, train_dir=s.output.train,
                                      heldout_dir=s.output.heldout))
