"""Check a dataset folder for duplicates, wrong labels, broken and odd files, and say what to do.

    python doctor.py --dataset dataset
    python doctor.py --dataset dataset --model pokedex.model --labelbin lb.pickle
    python doctor.py --dataset dataset --quarantine quarantine --move duplicate near-blank
    python doctor.py --undo quarantine
"""

import sys

from pyimagesearch import cli
# The code is pyimagesearch/commands/doctor.py, also installed as `pokedex-doctor`.
from pyimagesearch.commands.doctor import KINDS, main, parse_args, print_report  # noqa: F401

if __name__ == "__main__":
    sys.exit(cli.run(main))
