"""Review 23, items 7, 13, 15, 16 and 22: the command line refuses what it cannot do, in
one line and before any work (sizes and numbers without bounds, a quarantine inside the
dataset, doctor.py's outputs, odd label files and images), and file names that are not
UTF-8 are shown, not crashed on."""

import importlib
import os
import resource
import subprocess
import sys

import pytest

from conftest import REPO_ROOT
from pyimagesearch import cli

HUGE = "10000000000000000000"  # 10**19: past int64


def limit_memory():
    """A regression that starts the work (30 GB per image at 100,000 px) fails the test,
    not the machine."""
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))


def run_script(script, *args, cwd, env=None, timeout=60):
    return subprocess.run([sys.executable, os.path.join(REPO_ROOT, script), *map(str, args)],
                          cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          preexec_fn=limit_memory, env=env)


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1, result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def folder(tmp_path):
    """A working folder with a space in its name; the paths named below need not exist."""
    path = tmp_path / "a folder"
    path.mkdir()
    return path


# --- item 13: every numeric flag has a finite range, checked when parsing ---------------

@pytest.mark.parametrize("script,args,flag,valid", [
    ("train.py", ["-d", "no data", "-m", "m.keras", "-l", "lb.pickle", "--image-size", "100000"],
     "--image-size", "1 to 1024"),
    ("prepare.py", ["-d", "no data", "-o", "shards", "--image-size", "100000"],
     "--image-size", "1 to 1024"),
    ("doctor.py", ["-d", "no data", "--image-size", "100000"], "--image-size", "1 to 1024"),
    ("train.py", ["-d", "no data", "-m", "m.keras", "-l", "lb.pickle", "--batch-size", HUGE],
     "--batch-size", "1 to 4096"),
    ("classify.py", ["-m", "no.model", "-l", "lb.pickle", "-i", "x.png", "--batch-size", HUGE],
     "--batch-size", "1 to 4096"),
    ("evaluate.py", ["-m", "no.model", "-l", "lb.pickle", "--batch-size", HUGE],
     "--batch-size", "1 to 4096"),
])
def test_sizes_past_the_bound_are_refused_when_parsing(folder, script, args, flag, valid):
    line = assert_one_line_error(run_script(script, *args, cwd=folder), flag, valid)
    assert not list(folder.iterdir())  # no cache, no *.tmp-PID.npy


TRAIN = ["-d", "d", "-m", "m", "-l", "l"]
CLASSIFY = ["-m", "m", "-l", "l", "-i", "i"]


@pytest.mark.parametrize("command,args,flag,valid", [
    ("train", TRAIN + ["--epochs", HUGE], "--epochs", "1 to 100000"),
    ("train", TRAIN + ["--fine-tune-epochs", HUGE], "--fine-tune-epochs", "0 to 100000"),
    ("train", TRAIN + ["--patience", HUGE], "--patience", "0 to 100000"),
    ("train", TRAIN + ["--lr", "inf"], "--lr", "finite"),
    ("train", TRAIN + ["--lr", "nan"], "--lr", "finite"),
    ("train", TRAIN + ["--lr", "50"], "--lr", "at most 1"),
    ("train", TRAIN + ["--checkpoint-every", "inf"], "--checkpoint-every", "finite"),
    ("train", TRAIN + ["--checkpoint-every", "1e12"], "--checkpoint-every", "0 to 86400"),
    ("train", TRAIN + ["--num-processes", HUGE], "--num-processes", "1 to 1024"),
    ("train", TRAIN + ["--process-id", HUGE], "--process-id", "0 to 1023"),
    ("train", TRAIN + ["--val-split", "nan"], "--val-split", "finite"),
    ("evaluate", ["-m", "m", "-l", "l", "--epoch", HUGE], "--epoch", "1 to 100000"),
    ("evaluate", ["-m", "m", "-l", "l", "--top-k", HUGE], "--top-k", "1 to 1000"),
    ("classify", CLASSIFY + ["--top-k", HUGE], "--top-k", "1 to 1000"),
    ("classify", CLASSIFY + ["--min-confidence", "inf"], "--min-confidence", "finite"),
    ("prepare", ["-d", "d", "-o", "o", "--per-shard", HUGE], "--per-shard", "1 to 100000"),
])
def test_every_numeric_flag_has_a_finite_range(capsys, command, args, flag, valid):
    module = (importlib.import_module("prepare") if command == "prepare"
              else importlib.import_module(f"pyimagesearch.commands.{command}"))
    with pytest.raises(SystemExit) as exit:
        module.parse_args(args)
    assert exit.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and f"argument {flag}" in error and valid in error, error


def test_the_bounds_keep_the_sizes_the_networks_use():
    assert cli.image_size("1024") == 1024 and cli.image_size("28") == 28
    assert cli.batch_size("4096") == 4096
    assert cli.learning_rate("1") == 1.0 and cli.checkpoint_seconds("0") == 0.0
