"""The command-line programs: one module per script, each with `parse_args` and `main(argv)`.

`classify.py` and the other top-level scripts are thin shims over these
modules, and `pip install .` makes the same code the `pokedex-*` console
commands (pyproject.toml points each at a `<name>_command` function below;
not at `<name>`, which is the submodule's name once it is imported). Nothing here
imports TensorFlow: each command imports what it needs when it runs.
"""

import importlib
import sys


def _run(name):
    """Run `pyimagesearch.commands.<name>.main()` the way the script does; return its exit code."""
    from pyimagesearch import cli

    return cli.run(importlib.import_module(f"{__name__}.{name}").main)


def classify_command():
    """`pokedex-classify`: classify.py."""
    sys.exit(_run("classify"))


def serve_command():
    """`pokedex-serve`: serve.py."""
    sys.exit(_run("serve"))


def export_command():
    """`pokedex-export`: export.py."""
    sys.exit(_run("export"))


def doctor_command():
    """`pokedex-doctor`: doctor.py."""
    sys.exit(_run("doctor"))


def visualize_command():
    """`pokedex-visualize`: visualize.py."""
    sys.exit(_run("visualize"))


def train_command():
    """`pokedex-train`: train.py."""
    sys.exit(_run("train"))


def evaluate_command():
    """`pokedex-evaluate`: evaluate.py."""
    sys.exit(_run("evaluate"))
