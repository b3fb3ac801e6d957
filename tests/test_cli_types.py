"""The argparse number types of cli.py: the valid form in one line."""

import argparse

import pytest

from pyimagesearch import cli


@pytest.mark.parametrize("text,value", [("0", 0), ("42", 42), ("4294967295", 2**32 - 1)])
def test_seed_accepts_what_numpy_and_keras_accept(text, value):
    assert cli.seed(text) == value


@pytest.mark.parametrize("text,message", [
    ("-1", "must be 0 to 4294967295, e.g. 42 (got -1)"),
    ("4294967296", "must be 0 to 4294967295, e.g. 42 (got 4294967296)"),
    ("1.5", "must be a whole number, e.g. 42 (got '1.5')"),
])
def test_seed_refuses_with_the_valid_form(text, message):
    with pytest.raises(argparse.ArgumentTypeError) as error:
        cli.seed(text)
    assert str(error.value) == message
