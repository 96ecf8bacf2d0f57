from pathlib import Path

from cpt.artifacts.corpus import language_files
from cpt.tokenizer import select_pieces
from cpt.workflow.smk import plain, run

run(snakemake, lambda s: select_pieces(  # noqa: F821
    plain(s.params.section), s.input.base, Path(s.output.pieces).parent,
    language_files(s.input.train, plain(s.params.langs), "zh"), seed=s.params.section["seed"]))
