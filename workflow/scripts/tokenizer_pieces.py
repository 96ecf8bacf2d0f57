from pathlib import Path

from cpt.smk import plain, run
from cpt.tokenizer import select_pieces
from cpt.tokenizer.stage import category_files

run(snakemake, lambda s: select_pieces(  # noqa: F821
    plain(s.params.section), s.input.base, Path(s.output.pieces).parent,
    category_files(s.input.train, plain(s.params.langs), "zh"), seed=s.params.section["seed"]))
