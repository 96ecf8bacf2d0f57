"""`python -m cpt VERB ...` is the same as the `cpt` command."""

from cpt.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
