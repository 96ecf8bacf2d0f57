"""Snakemake and DVC glue: the scripts' helper (smk), whole-experiment validation (experiment), dvc.yaml generation
(dvc), the inputs of a locked config's CPU smoke run (smoke)."""
