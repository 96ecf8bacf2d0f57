"""`python -m cpt.launch [options] -- PROGRAM...`: plan the torchrun / srun + torchrun launch and exec it
(cpt.launch.plan)."""

import sys

from cpt.launch.plan import entry

if __name__ == "__main__":
    sys.exit(entry())
