import time

from cpt.clean import finalize
from cpt.core.provenance import write_provenance
from cpt.workflow.smk import plain, run

t0 = time.time()


def main(s):
    report = finalize(list(s.input), s.output[0], plain(s.params.section), progress=False)
    write_provenance(s.output[0], "clean", plain(s.params.section), inputs={"corpus_raw": s.params.raw},
                     started=t0, extra={"totals": report["totals"]})


run(snakemake, main)  # noqa: F821
