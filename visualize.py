"""Draw what a trained network sees: its first filters, feature maps, and Grad-CAM heat maps.

    python visualize.py --model pokedex.model --labelbin lb.pickle --image examples/pikachu.png
    python visualize.py -m pokedex.model -l lb.pickle -i examples/ --class pikachu -o sheets
"""

import sys

from pyimagesearch import cli
# The code is pyimagesearch/commands/visualize.py, also installed as `pokedex-visualize`.
from pyimagesearch.commands.visualize import main, parse_args  # noqa: F401

if __name__ == "__main__":
    sys.exit(cli.run(main))
