"""Train a network (SmallerVGGNet by default, --arch for the others) on a folder-per-class dataset.

    python train.py --dataset dataset --model pokedex.model --labelbin lb.pickle
    python train.py --dataset digits --model digits.model --labelbin digits.pickle \
        --arch cnn --image-size 28 --channels 1
"""

import sys

from pyimagesearch import cli
# The code is pyimagesearch/commands/train.py, also installed as `pokedex-train`.
from pyimagesearch.commands.train import architecture_names, main, parse_args  # noqa: F401

if __name__ == "__main__":
    sys.exit(cli.run(main))
