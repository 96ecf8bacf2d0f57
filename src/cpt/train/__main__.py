"""`python -m cpt.train ...` (what torchrun launches with `-m cpt.train`)."""

from cpt.train.cli import cli_train

if __name__ == "__main__":
    cli_train(prog_name="python -m cpt.train")
