"""scripts/build_digits.py and scripts/build_keras_dataset.py, run as a user runs them.

Nothing is downloaded: the keras datasets are read from small fake archives written
here in the exact formats keras downloads (mnist.npz, Fashion-MNIST's idx .gz files,
cifar-10-python.tar.gz of pickled batches), so keras' own parsing code is exercised.
Output folders have a space in their path.
"""

import gzip
import hashlib
import io
import os
import pickle
import struct
import subprocess
import sys
import tarfile

import numpy as np
import pytest
from PIL import Image

from pyimagesearch import dataset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIGIT_COUNTS = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]  # load_digits, 1,797 in all
MNIST_CLASSES = [str(digit) for digit in range(10)]
# In keras' label order (label 0 is t-shirt_top); train.py sorts the folder names.
FASHION_CLASSES = ["t-shirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                   "sneaker", "bag", "ankle_boot"]
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck"]


def run(script, *args, env=None):
    return subprocess.run([sys.executable, os.path.join(REPO, "scripts", script),
                           *map(str, args)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def folder_digest(root):
    """{relative path: sha256} of every file under root."""
    return {path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in root.rglob("*") if path.is_file()}


def counts_per_class(root):
    return {name: len(os.listdir(os.path.join(root, name))) for name in sorted(os.listdir(root))}


def fake_split(rng, count, shape):
    """`count` random uint8 images of `shape` and labels cycling through 0-9."""
    return (rng.integers(0, 256, (count, *shape), dtype=np.uint8),
            np.arange(count, dtype=np.uint8) % 10)


def test_digits_are_written_deterministically_as_train_py_reads_them(tmp_path):
    first, second = tmp_path / "my digits", tmp_path / "again"
    result = run("build_digits.py", "--output", first)
    assert result.returncode == 0, result.stderr
    assert "1,797 images" in result.stdout and len(result.stdout.splitlines()) == 1
    assert counts_per_class(first) == dict(zip(MNIST_CLASSES, DIGIT_COUNTS))
    with Image.open(first / "0" / "00000.png") as image:  # load_digits' first image is a 0
        assert (image.mode, image.size) == ("L", (28, 28))

    assert run("build_digits.py", "--output", second).returncode == 0
    assert folder_digest(first) == folder_digest(second)

    # train.py's scan (decoding is checked on the keras builds, written by the same code)
    class_names, files = dataset.list_class_files(str(first))
    assert class_names == MNIST_CLASSES and len(files) == 1797

    again = run("build_digits.py", "--output", first)  # a non-empty folder needs --force
    assert again.returncode == 2 and again.stderr.strip().count("\n") == 0
    assert "--force" in again.stderr


def test_digits_size_flag(tmp_path):
    assert run("build_digits.py", "--output", tmp_path / "big digits", "--size", 32).returncode == 0
    with Image.open(tmp_path / "big digits" / "0" / "00000.png") as image:
        assert (image.mode, image.size) == ("L", (32, 32))


def write_mnist_npz(path, rng):
    (x_train, y_train), (x_test, y_test) = fake_split(rng, 30, (28, 28)), fake_split(rng, 20, (28, 28))
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return x_train, x_test


def write_fashion_folder(folder, rng):
    """The four idx files: big-endian magic and sizes, then the bytes (keras skips the header)."""
    folder.mkdir()
    splits = {"train": fake_split(rng, 30, (28, 28)), "t10k": fake_split(rng, 20, (28, 28))}
    for prefix, (images, labels) in splits.items():
        with gzip.open(folder / f"{prefix}-images-idx3-ubyte.gz", "wb") as handle:
            handle.write(struct.pack(">4i", 2051, len(images), 28, 28) + images.tobytes())
        with gzip.open(folder / f"{prefix}-labels-idx1-ubyte.gz", "wb") as handle:
            handle.write(struct.pack(">2i", 2049, len(labels)) + labels.tobytes())
    return splits["train"][0], splits["t10k"][0]


def write_cifar_tarball(path, rng):
    """cifar-10-python.tar.gz: six pickled dicts of (N, 3072) channel-first rows.

    Byte-string keys as in the Python 2 originals; protocol 3, the nearest Python 3 writes
    (its protocol 2 stores bytes through `_codecs.encode`, which keras rightly refuses).
    """
    train, test = fake_split(rng, 30, (32, 32, 3)), fake_split(rng, 20, (32, 32, 3))
    batches = {f"data_batch_{number + 1}": (train[0][6 * number:6 * number + 6],
                                            train[1][6 * number:6 * number + 6])
               for number in range(5)}
    batches["test_batch"] = test
    with tarfile.open(path, "w:gz") as tarball:
        for name, (images, labels) in batches.items():
            rows = images.transpose(0, 3, 1, 2).reshape(len(images), -1)  # (N, 3*32*32)
            payload = pickle.dumps({b"batch_label": name.encode(), b"labels": labels.tolist(),
                                    b"data": rows, b"filenames": [b"x.png"] * len(rows)},
                                   protocol=3)
            member = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            member.size = len(payload)
            tarball.addfile(member, io.BytesIO(payload))
    return train[0], test[0]


@pytest.mark.parametrize("name, write, archive_name, label_names, mode", [
    ("mnist", write_mnist_npz, "mnist.npz", MNIST_CLASSES, "L"),
    ("fashion_mnist", write_fashion_folder, "fashion files", FASHION_CLASSES, "L"),
    ("cifar10", write_cifar_tarball, "cifar-10-python.tar.gz", CIFAR_CLASSES, "RGB"),
])
def test_keras_dataset_from_a_local_archive(tmp_path, name, write, archive_name, label_names,
                                            mode):
    archive = tmp_path / "down loads" / archive_name
    archive.parent.mkdir()
    x_train, x_test = write(archive, np.random.default_rng(0))
    output = tmp_path / "my data"
    result = run("build_keras_dataset.py", "--name", name, "--output", output,
                 "--archive", archive, "--limit", 2)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"train: 20 images, 2 per class -> {output / 'train'}",
                                          f"test: 20 images, 2 per class -> {output / 'test'}"]

    assert sorted(os.listdir(output)) == ["test", "train"]
    for split in ("train", "test"):
        assert counts_per_class(output / split) == {label: 2 for label in sorted(label_names)}
    # The pixels are the archive's own, under the right name: labels cycle through 0-9, so
    # x_train[13] is the second image labelled 3 (--limit 2 keeps it) and x_test[0] a 0.
    with Image.open(output / "train" / label_names[3] / "00013.png") as image:
        assert image.mode == mode and np.array_equal(np.asarray(image), x_train[13])
    with Image.open(output / "test" / label_names[0] / "00000.png") as image:
        assert np.array_equal(np.asarray(image), x_test[0])

    folder = dataset.load_image_folder(str(output / "train"), 16, str(tmp_path / "cache"),
                                       log=lambda *_: None)
    assert folder.class_names == sorted(label_names) and len(folder.paths) == 20


def assert_one_line_error(result, *words):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert all(word in last for word in words), result.stderr


def test_keras_dataset_usage_errors(tmp_path):
    output = tmp_path / "my data"
    assert_one_line_error(run("build_keras_dataset.py", "--name", "mnist2", "--output", output),
                          "mnist2", "fashion_mnist")
    assert_one_line_error(run("build_keras_dataset.py", "--name", "mnist", "--output", output,
                              "--archive", tmp_path / "nowhere.npz"), "nowhere.npz")
    assert_one_line_error(run("build_keras_dataset.py", "--name", "mnist", "--output", output,
                              "--limit", 0), "--limit", "positive")
    assert not output.exists()


def test_keras_dataset_corrupt_archive(tmp_path):
    archive = tmp_path / "down loads" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    archive.write_bytes(b"not a tarball")
    result = run("build_keras_dataset.py", "--name", "cifar10", "--output", tmp_path / "out",
                 "--archive", archive)
    assert_one_line_error(result, "cifar-10-python.tar.gz", "not a readable cifar10 archive")
    assert result.stderr.strip().count("\n") == 0 and not (tmp_path / "out").exists()


def test_keras_dataset_download_failure_suggests_archive(tmp_path):
    # An empty keras cache, and a proxy on a closed local port: the download fails at once
    # here and anywhere else, and never fetches the real file.
    closed = "http://127.0.0.1:9"
    result = run("build_keras_dataset.py", "--name", "mnist", "--output", tmp_path / "out",
                 env={"KERAS_HOME": str(tmp_path / "keras home"), "HTTPS_PROXY": closed,
                      "https_proxy": closed, "NO_PROXY": "", "no_proxy": ""})
    assert_one_line_error(result, "could not download mnist", "mnist.npz", "--archive")
    assert result.stderr.strip().count("\n") == 0
