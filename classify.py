"""Classify images with a trained model and write annotated copies.

    python classify.py --model pokedex.model --labelbin lb.pickle --image examples/charmander.png
    python classify.py -m pokedex.model -l lb.pickle -i examples/ --top-k 3 --json
"""

import sys

from pyimagesearch import cli
# The code is pyimagesearch/commands/classify.py, also installed as `pokedex-classify`.
from pyimagesearch.commands.classify import default_output, main, parse_args  # noqa: F401

if __name__ == "__main__":
    sys.exit(cli.run(main))
