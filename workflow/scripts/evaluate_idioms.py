from cpt.evaluate.idioms import write_idiom_set
from cpt.workflow.smk import plain, run


def main(s):
    sec = plain(s.params.section)
    write_idiom_set(s.output[0], sec["num_dev"], sec["num_test"], sec["seed"], sec["max_explanation_chars"])


run(snakemake, main)  # noqa: F821
