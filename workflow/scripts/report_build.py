from pathlib import Path

from cpt.report.build import build_report
from cpt.workflow.smk import run


def main(s):
    out = Path(s.output.summary).parent
    build_report(out.parent, out, list(s.params.stages), list(s.params.points), s.params.experiment,
                 section=s.params.section, devices=s.params.devices)


run(snakemake, main)  # noqa: F821
