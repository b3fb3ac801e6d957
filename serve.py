"""Serve a trained model: a REST API and an upload page for phones and desktops.

    python serve.py --model pokedex.model --labelbin lb.pickle
    python serve.py -m pokedex.model -l lb.pickle --host 0.0.0.0 --token "$(openssl rand -hex 16)"

Then open http://127.0.0.1:8000/ (the page), /docs (the API), or
    curl -F file=@examples/pikachu.png http://127.0.0.1:8000/predict
"""

import sys

from pyimagesearch import cli
# The code is pyimagesearch/commands/serve.py, also installed as `pokedex-serve`.
from pyimagesearch.commands.serve import (is_loopback, lan_address, main,  # noqa: F401
                                          parse_args, port_number, port_problem)

if __name__ == "__main__":
    sys.exit(cli.run(main))
