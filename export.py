"""Export a model trained by train.py for phones and other runtimes.

    python export.py --model pokedex.model --labelbin lb.pickle --format coreml
    python export.py -m pokedex.model -l lb.pickle --format litert --quantize int8 --dataset dataset
    python export.py -m pokedex.model -l lb.pickle --format all --dataset dataset --output exports/
"""

import sys

from pyimagesearch import cli
# The code is pyimagesearch/commands/export.py, also installed as `pokedex-export`.
from pyimagesearch.commands.export import check, main, parse_args, planned_outputs  # noqa: F401

if __name__ == "__main__":
    sys.exit(cli.run(main))
