"""What train.py and classify.py share: one-line errors and exit codes."""

import argparse
import os
import sys

# TensorFlow's C++ start-up chatter hides our own messages; errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

USAGE_ERROR = 2  # argparse's own code for a bad argument
INTERRUPTED = 130  # the shell's code for Ctrl-C


class ArgumentParser(argparse.ArgumentParser):
    """argparse, printing its error as one line: `prog: error: ...` and exit 2."""

    def error(self, message):
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message}\n")


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, e.g. 8 (got {text!r})") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, e.g. 8 (got {value})")
    return value


def fraction(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, e.g. 0.2 (got {text!r})") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 exclusive, e.g. 0.2 (got {value})")
    return value


def positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, e.g. 1e-3 (got {text!r})") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, e.g. 1e-3 (got {value})")
    return value


def fail(prog, message, code=USAGE_ERROR):
    """Print `prog: error: message` on one line and exit with `code`."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    sys.exit(code)
