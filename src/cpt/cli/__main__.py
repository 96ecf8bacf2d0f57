"""`python -m cpt.cli VERB ...` is the same as the `cpt` command."""

from cpt.cli import main

if __name__ == "__main__":
    main()
