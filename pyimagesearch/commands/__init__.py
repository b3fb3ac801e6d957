"""The command-line programs: one module per script, each with `parse_args` and `main(argv)`.

`classify.py` and the other top-level scripts are thin shims over these
modules, and `pip install .` makes the same code the `pokedex-*` console
commands (pyproject.toml points each at a function below). Nothing here
imports TensorFlow: each command imports what it needs when it runs.
"""

import importlib
import sys


def _run(name):
    """Run `pyimagesearch.commands.<name>.main()` the way the script does; return its exit code."""
    from pyimagesearch import cli

    return cli.run(importlib.import_module(f"{__name__}.{name}").main)


def classify():
    """`pokedex-classify`: classify.py."""
    sys.exit(_run("classify"))


def serve():
    """`pokedex-serve`: serve.py."""
    sys.exit(_run("serve"))


def export():
    """`pokedex-export`: export.py."""
    sys.exit(_run("export"))


def doctor():
    """`pokedex-doctor`: doctor.py."""
    sys.exit(_run("doctor"))


def visualize():
    """`pokedex-visualize`: visualize.py."""
    sys.exit(_run("visualize"))


def train():
    """`pokedex-train`: train.py."""
    sys.exit(_run("train"))


def evaluate():
    """`pokedex-evaluate`: evaluate.py."""
    sys.exit(_run("evaluate"))
