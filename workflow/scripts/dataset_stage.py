from cpt.dataset.build import run_rule
from cpt.smk import plain, run

run(snakemake, lambda s: run_rule(plain(s.params.section), plain(s.params.data_files), s.input.tokenizer,  # noqa: F821
                                  s.output[0], replay_dirs=plain(s.params.replay_from)))
