"""Evaluate a trained model on a folder-per-class dataset: report, confusion matrix, mistakes.

    python evaluate.py --model pokedex.model --labelbin lb.pickle --dataset my_test_images
    python evaluate.py --model pokedex.model --labelbin lb.pickle --split val [--epoch 7]
    python evaluate.py --model pokedex.model --labelbin lb.pickle --drift new_photos
"""

import sys

from pyimagesearch import cli
# The code is pyimagesearch/commands/evaluate.py, also installed as `pokedex-evaluate`.
from pyimagesearch.commands.evaluate import default_prefix, main, page_path, parse_args  # noqa: F401

if __name__ == "__main__":
    sys.exit(cli.run(main))
