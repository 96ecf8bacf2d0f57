from pathlib import Path

from cpt.clean import prepare
from cpt.workflow.smk import plain, run

run(snakemake, lambda s: prepare(  # noqa: F821
    {s.wildcards.category: Path(s.input[0]) / f"{s.wildcards.category}.jsonl"}, plain(s.params.langs),
    plain(s.params.section), s.output[0], workers=s.threads, progress=False))
