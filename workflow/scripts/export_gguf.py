import json
import logging

from cpt.model.gguf_export import export_gguf
from cpt.workflow.smk import run


def main(s):
    info = export_gguf(s.input.model, s.output[0], s.params.section["outtype"],
                       pre_tokenizer_from=s.input.base_tokenizer)
    logging.getLogger("cpt.rule.export_gguf").info("%s", json.dumps(info, indent=2))


run(snakemake, main)  # noqa: F821
