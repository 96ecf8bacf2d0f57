"""cpt: the Colossal-LLaMA-2 continual pre-training recipe as a library.

Every piece of logic of the workflow lives in this package; Snakemake rules and workflow/scripts only call it.
"""

__version__ = "0.1.0"
