"""End-to-end: run train.py and classify.py as a user would, in a path with a space."""

import json
import os
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLORS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}


def run(script, *args, cwd, cache):
    env = dict(os.environ, POKEDEX_CACHE_DIR=str(cache), PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, os.path.join(REPO, script), *map(str, args)],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def make_images(folder, color, count, seed):
    """Noisy squares of one colour; 32 px, as JPEG and PNG under scraped-style names."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        pixels = np.clip(rng.normal(color, 25, (32, 32, 3)), 0, 255).astype(np.uint8)
        name = f"{index:08d}.jpg?resize=1196,1196" if index % 2 else f"img {index}.png:large"
        Image.fromarray(pixels).save(folder / name, format="PNG" if index % 2 == 0 else "JPEG")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A dataset with three classes and junk files, trained once for the module."""
    root = tmp_path_factory.mktemp("cli") / "my runs"  # a space in every path
    data = root / "data set"
    for seed, (name, color) in enumerate(COLORS.items()):
        make_images(data / name, color, 16, seed)
    (data / "red" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(100))
    (data / "red" / "notes.txt").write_text("not an image")
    (data / "green" / "empty.jpg").write_bytes(b"")
    (data / "broken").mkdir()  # a class folder with only bad files is left out, with a warning
    (data / "broken" / "cut.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (data / ".ipynb_checkpoints").mkdir()
    make_images(data / ".ipynb_checkpoints", (0, 0, 0), 2, 9)
    result = run("train.py", "--dataset", data, "--model", root / "pokedex.model",
                 "--labelbin", root / "lb.pickle", "--plot", root / "plot.png",
                 "--epochs", 2, "--image-size", 32, "--batch-size", 8,
                 "--class-weight", "balanced", cwd=root, cache=root / "cache")
    return root, data, result


def test_train_writes_every_output(workspace):
    root, _, result = workspace
    assert result.returncode == 0, result.stderr[-2000:]
    assert (root / "pokedex.model").read_bytes()[:4] == b"PK\x03\x04"  # Keras native zip
    assert (root / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    label_binarizer = pickle.loads((root / "lb.pickle").read_bytes())
    assert list(label_binarizer.classes_) == ["blue", "green", "red"]  # no hidden folder
    assert json.loads((root / "pokedex.model.labels.json").read_text()) == ["blue", "green", "red"]
    settings = json.loads((root / "pokedex.model.settings.json").read_text())
    assert settings["settings"]["epochs"] == 2 and settings["image_size"] == 32
    assert settings["settings"]["val_split"] == 0.2 and settings["settings"]["seed"] == 42
    # the defaults (plateau schedule, patience 10, colour jitter) and the flag given
    assert {key: settings["settings"][key] for key in (
        "lr_schedule", "patience", "color_augment", "class_weight")} == {
        "lr_schedule": "plateau", "patience": 5, "color_augment": True,
        "class_weight": "balanced"}
    assert "class weights (balanced)" in result.stdout
    assert not [name for name in os.listdir(root) if ".tmp" in name]
    # The held-out test set (default --test-split 0.15) is evaluated at the end.
    metrics = json.loads((root / "pokedex.model.metrics.json").read_text())
    assert metrics["num_images"] == settings["test_images"] == 6  # 2 of 16 per class
    assert settings["val_images"] == 9 and settings["train_images"] == 33
    assert (root / "pokedex.model.confusion.png").read_bytes()[:4] == b"\x89PNG"
    assert "precision" in (root / "pokedex.model.report.txt").read_text()


def test_train_warns_once_per_bad_file_and_summarises(workspace):
    _, _, result = workspace
    output = result.stdout + result.stderr
    warnings = [line for line in output.splitlines() if "skipped" in line and "WARNING" in line]
    assert len(warnings) == 4, warnings
    for name in ("notes.txt", "empty.jpg", ".DS_Store", "cut.jpg"):
        assert sum(name in line for line in warnings) == 1, (name, warnings)
    assert ".ipynb_checkpoints" not in output  # hidden folders are not classes
    assert "class 'broken' has no readable images; it is left out" in output
    assert "4 file(s) skipped" in output
    assert "Traceback" not in output


def test_classify_prints_label_and_writes_annotated_copy(workspace):
    root, data, _ = workspace
    image = root / "a red one.png"
    make_images(root / "tmp", COLORS["red"], 1, 7)
    os.replace(root / "tmp" / "img 0.png:large", image)
    before = image.read_bytes()
    result = run("classify.py", "--model", root / "pokedex.model", "--labelbin",
                 root / "lb.pickle", "--image", image, cwd=root, cache=root / "cache")
    assert result.returncode == 0, result.stderr[-2000:]
    assert re.search(r"^(red|green|blue): \d{1,3}\.\d\d% \((in)?correct\)$", result.stdout, re.M)
    written = root / "output" / "a red one_classified.png"
    with Image.open(written) as annotated:
        assert annotated.size[0] == 400
    assert image.read_bytes() == before  # the input is never touched


def test_classify_without_class_in_name_shows_no_verdict(workspace):
    root, data, _ = workspace
    image = next((data / "blue").glob("*.png:large"))
    plain = root / "photo.png"
    plain.write_bytes(image.read_bytes())
    result = run("classify.py", "-m", root / "pokedex.model", "-l", root / "lb.pickle",
                 "-i", plain, "-o", root / "out dir" / "x.jpg", cwd=root, cache=root / "cache")
    assert result.returncode == 0, result.stderr[-2000:]
    assert re.search(r"^(red|green|blue): \d+\.\d\d%$", result.stdout, re.M)
    with Image.open(root / "out dir" / "x.jpg") as annotated:
        assert annotated.format == "JPEG"


def test_classify_refuses_label_file_from_another_run(workspace, tmp_path):
    root, _, _ = workspace
    from sklearn.preprocessing import LabelBinarizer

    other = tmp_path / "lb.pickle"
    other.write_bytes(pickle.dumps(LabelBinarizer().fit(["a", "b", "c", "d"])))
    result = run("classify.py", "-m", root / "pokedex.model", "-l", other,
                 "-i", next((root / "data set" / "red").iterdir()), cwd=tmp_path,
                 cache=tmp_path)
    assert_usage_error(result, "4 classes but")


def assert_usage_error(result, fragment):
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1 and fragment in lines[0], result.stderr


@pytest.mark.parametrize("flag,value,fragment", [
    ("--epochs", "0", "must be 1 to 100000"),
    ("--epochs", "-3", "must be 1 to 100000"),
    ("--batch-size", "0", "must be 1 to 4096"),
    ("--val-split", "0", "between 0 and 1"),
    ("--val-split", "1", "between 0 and 1"),
    ("--val-split", "1.5", "between 0 and 1"),
    ("--epochs", "ten", "whole number"),
    ("--seed", "-1", "0 to 4294967295"),
    ("--seed", "4294967296", "0 to 4294967295"),
    ("--checkpoint-every", "-5", "0 to 86400"),
    ("--class-weight", "heavy", "invalid choice"),
    ("--lr-schedule", "cosine", "invalid choice"),
])
def test_train_rejects_bad_numbers(tmp_path, flag, value, fragment):
    (tmp_path / "data").mkdir()
    result = run("train.py", "-d", tmp_path / "data", "-m", tmp_path / "m", "-l",
                 tmp_path / "l", flag, value, cwd=tmp_path, cache=tmp_path)
    assert_usage_error(result, fragment)


def test_train_rejects_missing_empty_and_one_class_datasets(tmp_path):
    args = ["-m", tmp_path / "m.model", "-l", tmp_path / "lb.pickle"]
    result = run("train.py", "-d", tmp_path / "nope", *args, cwd=tmp_path, cache=tmp_path)
    assert_usage_error(result, "folder not found")
    (tmp_path / "empty").mkdir()
    result = run("train.py", "-d", tmp_path / "empty", *args, cwd=tmp_path, cache=tmp_path)
    assert_usage_error(result, "no class folders")
    make_images(tmp_path / "one" / "red", COLORS["red"], 3, 0)
    (tmp_path / "one" / "broken").mkdir()
    (tmp_path / "one" / "broken" / "x.jpg").write_bytes(b"\xff\xd8\xff garbage")
    result = run("train.py", "-d", tmp_path / "one", *args, cwd=tmp_path, cache=tmp_path)
    assert_usage_error(result, "at least two classes")
    assert not (tmp_path / "m.model").exists()


def test_classify_rejects_missing_files_and_unreadable_image(workspace, tmp_path):
    root, _, _ = workspace
    model, labels = root / "pokedex.model", root / "lb.pickle"
    image = tmp_path / "truncated.jpg"
    image.write_bytes(b"\xff\xd8\xff\xe0 not really")
    cases = [((tmp_path / "none.model", labels, image), "--model: file not found"),
             ((model, tmp_path / "none.pickle", image), "--labelbin: file not found"),
             ((model, labels, tmp_path / "none.png"), "--image: file not found"),
             ((model, labels, image), "truncated.jpg")]
    for (model_path, labels_path, image_path), fragment in cases:
        result = run("classify.py", "-m", model_path, "-l", labels_path, "-i", image_path,
                     cwd=tmp_path, cache=tmp_path)
        assert_usage_error(result, fragment)


def test_train_refuses_unwritable_outputs_before_training(tmp_path):
    """--model naming a folder, or a path under a file, fails in one line before any work."""
    from conftest import run_without_tensorflow

    make_images(tmp_path / "data" / "red", COLORS["red"], 3, 0)
    make_images(tmp_path / "data" / "blue", COLORS["blue"], 3, 1)
    (tmp_path / "a folder").mkdir()
    (tmp_path / "a file").write_text("not a folder")
    cases = [(["-m", tmp_path / "a folder"], "--model"),
             (["-m", tmp_path / "a file" / "m.model"], "cannot write"),
             (["-l", tmp_path / "a folder"], "--labelbin")]
    for override, fragment in cases:
        args = dict(zip(["-m", "-l"], [tmp_path / "m.model", tmp_path / "lb.pickle"]))
        args.update(dict(zip(override[::2], override[1::2])))
        err = run_without_tensorflow("train", ["-d", tmp_path / "data", "--cache-dir",
                                               tmp_path / "cache", *sum(args.items(), ())],
                                     cwd=tmp_path)
        lines = [line for line in err.splitlines() if "error:" in line]
        assert len(lines) == 1 and fragment in lines[0], err
    assert not (tmp_path / "cache").exists()  # refused before the images were even read


def test_second_training_on_the_same_model_names_the_first_and_exits_2(tmp_path):
    from pyimagesearch import locking

    make_images(tmp_path / "data" / "red", COLORS["red"], 3, 0)
    make_images(tmp_path / "data" / "blue", COLORS["blue"], 3, 1)
    with locking.exclusive(str(tmp_path / "m.model.lock"), "the model"):
        result = run("train.py", "-d", tmp_path / "data", "-m", tmp_path / "m.model",
                     "-l", tmp_path / "lb.pickle", cwd=tmp_path, cache=tmp_path / "cache")
    assert_usage_error(result, f"in use by another pokedex process (pid {os.getpid()})")
    assert not (tmp_path / "m.model").exists() and not (tmp_path / "cache").exists()
    assert not (tmp_path / "m.model.lock").exists()  # released and removed
