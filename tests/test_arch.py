"""train.py --arch end to end: networks other than SmallerVGGNet train, classify and evaluate.

train.py in a subprocess on a tiny dataset in a folder with a space (cnn grey at 12 px
with --keep-epochs, rnn at 6), then classify.py's and evaluate.py's main() in-process on
what it wrote (their own files run them as subprocesses: test_classify.py, test_drift.py);
the usage errors of --image-size, --channels and --epoch; and,
in-process, a transfer run interrupted in its second phase that resumes there (and
refuses to resume as another network).
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("tensorflow")

from conftest import REPO_ROOT, ctrl_c_in_epoch, run_main, training_settings  # noqa: E402
from pyimagesearch import training  # noqa: E402
from pyimagesearch.checkpoints import ResumeError  # noqa: E402

COLOURS = {"blue": (30, 30, 200), "green": (30, 200, 30), "red": (200, 30, 30)}


def make_dataset(root, count=6, size=16):
    rng = np.random.default_rng(0)
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True)
        for index in range(count):
            pixels = np.clip(rng.normal(colour, 25, (size, size, 3)), 0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{index}.png")


def run_script(script, *args, cwd):
    return subprocess.run([sys.executable, os.path.join(REPO_ROOT, script), *map(str, args)],
                          cwd=cwd, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=REPO_ROOT))


def run_in_process(script, *args, capsys):
    """`script`.main(args) in this process (TensorFlow already loaded), as run_script answers."""
    code, out, err = run_main(script.removesuffix(".py"), args, capsys)
    return subprocess.CompletedProcess(script, code, out, err)


def error_lines(result):
    return [line for line in result.stderr.splitlines() if "error:" in line]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("arch") / "a folder with spaces"
    make_dataset(root / "data")
    return root


def train(folder, name, *args):
    model = folder / f"{name}.model"
    result = run_script("train.py", "-d", folder / "data", "-m", model,
                        "-l", folder / f"{name}.pickle", "-p", folder / f"{name}.png",
                        "--batch-size", 4, "--seed", 1, *args, cwd=folder)
    assert result.returncode == 0, result.stderr[-3000:]
    return model, folder / f"{name}.pickle"


def test_cnn_grey_trains_classifies_and_evaluates_its_split_and_epochs(folder, capsys):
    model, labels = train(folder, "cnn", "--arch", "cnn", "--image-size", 12,
                          "--channels", 1, "--epochs", 2, "--keep-epochs")
    description = json.loads((folder / "cnn.model.settings.json").read_text())
    assert description["architecture"] == "cnn" and description["input_channels"] == 1
    assert description["image_size"] == 12 and description["channel_order"] == "RGB"
    assert description["kept_epochs"] == [1, 2]
    assert os.path.isfile(f"{model}.tflite") and os.path.isfile(f"{model}.split.json")

    from pyimagesearch.inference import Classifier

    assert Classifier(str(model), str(labels)).backend == "litert"  # the grey conv converts
    result = run_in_process("classify.py", "-m", model, "-l", labels,
                            "-i", folder / "data" / "red" / "0.png", "--output", folder / "out",
                            capsys=capsys)
    assert result.returncode == 0, result.stderr
    assert any(name in result.stdout for name in COLOURS), result.stdout

    result = run_in_process("evaluate.py", "-m", model, "-l", labels, "--split", "val",
                            capsys=capsys)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((folder / "cnn.model.eval-val.metrics.json").read_text())
    assert metrics["num_images"] == description["val_images"] and metrics["split"] == "val"
    assert "of the" in result.stdout and "validation images of the split found" in result.stdout

    result = run_in_process("evaluate.py", "-m", model, "-l", labels, "--split", "train",
                            "--epoch", 1, capsys=capsys)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((folder / "cnn.model.eval-train-epoch1.metrics.json").read_text())
    assert metrics["num_images"] == description["train_images"] and metrics["epoch"] == 1

    result = run_in_process("evaluate.py", "-m", model, "-l", labels, "--split", "val",
                            "--epoch", 9, capsys=capsys)
    assert result.returncode == 2 and "epochs 1-2" in error_lines(result)[0]


def test_a_sequence_network_trains_and_classifies_and_epoch_needs_keep_epochs(folder, capsys):
    model, labels = train(folder, "rnn", "--arch", "rnn", "--image-size", 6, "--epochs", 1)
    description = json.loads((folder / "rnn.model.settings.json").read_text())
    assert description["architecture"] == "rnn" and description["input_channels"] == 1
    result = run_in_process("classify.py", "-m", model, "-l", labels,
                            "-i", folder / "data" / "blue" / "1.png", "--output", folder / "out",
                            capsys=capsys)
    assert result.returncode == 0, result.stderr
    result = run_in_process("evaluate.py", "-m", model, "-l", labels, "--split", "val",
                            "--epoch", 1, capsys=capsys)
    lines = error_lines(result)
    assert result.returncode == 2 and len(lines) == 1 and "--keep-epochs" in lines[0], \
        result.stderr


@pytest.mark.parametrize("args, fragment", [
    (["--arch", "transfer", "--image-size", 16], "the smallest that works is 32"),
    (["--channels", 2], "--channels: invalid choice: 2"),
])
def test_what_a_network_cannot_take_is_one_line_before_any_image_is_read(folder, args, fragment):
    result = run_script("train.py", "-d", folder / "data", "-m", folder / "bad.model",
                        "-l", folder / "bad.pickle", "--cache-dir", folder / "bad cache",
                        *args, cwd=folder)
    lines = error_lines(result)
    assert result.returncode == 2 and len(lines) == 1 and fragment in lines[0], result.stderr
    assert not (folder / "bad cache").exists()


def test_resolve_gives_each_network_its_own_size_and_channels_and_refuses_the_rest():
    from pyimagesearch.architecture import ArchitectureError, resolve

    older = resolve({"epochs": 3})  # a run from before --arch: the tutorial's network
    assert (older["arch"], older["image_size"], older["channels"]) == ("smallervggnet", 96, 3)
    digits = resolve({"arch": "cnn", "epochs": 3})
    assert (digits["image_size"], digits["channels"]) == (28, 1)
    assert resolve({"arch": "cnn", "image_size": 40, "channels": 3, "epochs": 3})[
        "image_size"] == 40
    for settings, fragment in [({"arch": "smallervggnet", "image_size": 11}, "smallest that works is 12"),
                               ({"arch": "no-such-net"}, "valid names: "),
                               ({"arch": "cnn", "fine_tune_epochs": 1},
                                "two-phase networks (efficientnet-lite0, efficientnet-lite2, transfer)"),
                               ({"arch": "transfer", "fine_tune_epochs": 4}, "more than --epochs 3")]:
        with pytest.raises(ArchitectureError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
            resolve(dict(settings, epochs=3))


def test_transfer_interrupted_in_phase_two_resumes_there_and_not_as_another_network(
        tmp_path, monkeypatch):
    root = tmp_path / "with space"
    make_dataset(root / "data", count=5)
    settings = training_settings(root, arch="transfer", image_size=32, epochs=2,
                                 fine_tune_epochs=1, batch_size=4, checkpoint_every=0.0)
    restore_fit = ctrl_c_in_epoch(monkeypatch, 1)
    messages = []
    with pytest.raises(training.Interrupted):
        training.train(dict(settings), log=messages.append)
    assert any("phase two after epoch 1" in message for message in messages)
    state = json.loads((root / "m.model.run" / "state.json").read_text())
    assert state["epoch"] == 1 and state["phase"] == 2 and state["phase_one_epochs"] == 1
    restore_fit()

    with pytest.raises(ResumeError, match="--arch was transfer"):
        training.train(dict(settings, arch="cnn", fine_tune_epochs=None), log=messages.append)

    messages.clear()
    history = training.train(dict(settings), log=messages.append)
    assert len(history["loss"]) == 2
    assert not any("phase two" in message for message in messages)  # already in it
    from pyimagesearch import persistence

    model = persistence.load_model(str(root / "m.model"))
    assert model.get_layer("backbone").trainable  # saved from phase two


# Every network through the whole product, in-process and small: train (one epoch),
# the Python API through the LiteRT copy and through Keras (the two must agree), and
# evaluate.py's code. Sizes: each network's smallest that is cheap (transfer needs 32);
# the sequence networks unroll their GRUs over the image's rows, so their cost grows with
# the size: 6, as in test_networks.py.
EVERY_SIZE = {"transfer": 32, "smallervggnet": 24, "efficientnet-lite0": 32,
              "efficientnet-lite2": 32, "rnn": 6, "birnn": 6, "cnn-rnn": 6}


@pytest.mark.parametrize("arch", [  # Lite2 is Lite0's code: with `make test-all` only
    pytest.param(name, marks=pytest.mark.slow) if name == "efficientnet-lite2" else name
    for name in sorted(__import__("pyimagesearch.networks", fromlist=["names"]).names())])
def test_every_network_trains_classifies_through_the_api_and_evaluates(arch, tmp_path):
    from pyimagesearch import Pokedex
    from pyimagesearch.commands.evaluate import main as evaluate

    make_dataset(tmp_path / "data", count=4)
    settings = training_settings(tmp_path, epochs=1, arch=arch, channels=3,
                                 image_size=EVERY_SIZE.get(arch, 16), batch_size=4)
    training.train(settings, log=lambda line: None)
    fast = Pokedex.load(settings["model"], settings["labelbin"])
    slow = Pokedex.load(settings["model"], settings["labelbin"], backend="keras")
    assert fast.classifier.backend == "litert" and slow.classifier.backend == "keras"
    folder = str(tmp_path / "data")
    answers, again = fast.classify_folder(folder), slow.classify_folder(folder)
    assert len(answers) == 12 and [a["labels"] for a in answers] == [a["labels"] for a in again]
    np.testing.assert_allclose([a["probabilities"] for a in answers],
                               [a["probabilities"] for a in again], atol=1e-4)
    evaluate(["-m", settings["model"], "-l", settings["labelbin"], "-d", folder,
                   "--output-prefix", str(tmp_path / "eval") + "/"])
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["num_images"] == 12 and 0 <= metrics["accuracy"] <= 1
