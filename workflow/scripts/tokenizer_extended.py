from cpt.artifacts.corpus import language_files
from cpt.tokenizer import build_extended_tokenizer
from cpt.workflow.smk import plain, run

run(snakemake, lambda s: build_extended_tokenizer(  # noqa: F821
    plain(s.params.section), s.input.base, s.input.pieces, s.output[0], s.input.candidates,
    english_files=language_files(s.input.train, plain(s.params.langs), "en"),
    zh_files=language_files(s.input.heldout, plain(s.params.langs), "zh")))
