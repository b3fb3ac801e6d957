"""Write MNIST, Fashion-MNIST or CIFAR-10 from keras.datasets as folder-per-class images.

    <output>/train/<class>/<index:05d>.png   x_train[index]
    <output>/test/<class>/<index:05d>.png    x_test[index]

The official test set gets its own folder so that it stays unseen: train on
<output>/train (train.py takes its validation images from there) and measure once on
<output>/test with evaluate.py. Class folders carry the real names (`0`..`9`,
`t-shirt_top`.., `airplane`..). The same archive gives byte-identical files.

Without --archive the data comes from `keras.datasets.<name>.load_data()`, which
downloads it once into ~/.keras/datasets (or $KERAS_HOME/datasets). With --archive the
same files, downloaded elsewhere, are read by keras' own parsing code:
    mnist          mnist.npz (or a folder holding it)
    fashion_mnist  a folder holding train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
                   t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz
    cifar10        cifar-10-python.tar.gz (or the folder it extracts to)

    python scripts/build_keras_dataset.py --name mnist --output mnist
    python scripts/build_keras_dataset.py --name cifar10 --output cifar10 --limit 500 \
        --archive ~/Downloads/cifar-10-python.tar.gz
"""
import argparse
import contextlib
import importlib
import socket
import sys
import tarfile
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np

sys.path.append(str(Path(__file__).resolve().parent.parent))  # the repository root
from pyimagesearch import cli  # noqa: E402
from _folders import check_output, describe_counts, fail, prepare_output, write_class_folders

KERAS_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
CLASS_NAMES = {
    "mnist": [str(digit) for digit in range(10)],
    "fashion_mnist": ["t-shirt_top", "trouser", "pullover", "dress", "coat", "sandal",
                      "shirt", "sneaker", "bag", "ankle_boot"],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                "ship", "truck"],
}
SOURCES = {  # where load_data downloads from, for the message when it cannot
    "mnist": f"{KERAS_URL}mnist.npz",
    "fashion_mnist": f"the four *-ubyte.gz files under {KERAS_URL}",
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
}
CIFAR_BATCHES = [f"data_batch_{number}" for number in range(1, 6)] + ["test_batch"]
DOWNLOAD_TIMEOUT = 60  # seconds without a byte before a stalled download fails


def import_keras():
    """keras, without TensorFlow's start-up lines burying our one-line messages."""
    with cli.quiet_stderr():
        import keras

    return keras


def download(name: str):
    """`keras.datasets.<name>.load_data()`: ((x_train, y_train), (x_test, y_test))."""
    keras = import_keras()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT)  # urlretrieve itself would wait forever
    try:
        return getattr(keras.datasets, name).load_data()
    except Exception as error:  # get_file wraps every network failure in a bare Exception
        fail(f"could not download {name} through keras.datasets ({one_line(error)}); "
             f"fetch {SOURCES[name]} elsewhere and pass --archive")


def read_archive(name: str, archive: Path):
    """The arrays of a local copy of what load_data downloads, parsed by keras' own code."""
    if name == "cifar10":
        return read_cifar10(archive)
    keras = import_keras()

    def local_file(fname, *args, **kwargs):
        return str(archive / fname if archive.is_dir() else archive)

    # load_data finds its files through get_file, which checks the official sha256 and
    # downloads again on a mismatch (over the user's file, if it sits in the cache).
    # Pointing get_file at the local file keeps everything else keras' own parsing.
    load_data = getattr(keras.datasets, name).load_data
    with mock.patch.object(importlib.import_module(load_data.__module__), "get_file",
                           local_file):
        return load_data()


def read_cifar10(archive: Path):
    """cifar10.load_data's loop over keras' load_batch, for any number of images.

    load_data itself cannot be pointed at a file: it pre-sizes 50,000 training rows.
    """
    import_keras()
    from keras.src.datasets.cifar import load_batch  # the pickle reader, refusing code

    with contextlib.ExitStack() as stack:
        if archive.is_dir():
            inner = archive / "cifar-10-batches-py"
            folder = inner if inner.is_dir() else archive
        else:  # only the six batch files come out of the tarball, never a path of its own
            tarball = stack.enter_context(tarfile.open(archive, "r:*"))
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            members = {Path(member.name).name: member for member in tarball.getmembers()
                       if member.isfile()}
            for batch in CIFAR_BATCHES:
                if batch not in members:
                    raise ValueError(f"no {batch} in the tarball")
                (folder / batch).write_bytes(tarball.extractfile(members[batch]).read())
        batches = [load_batch(str(folder / batch)) for batch in CIFAR_BATCHES]
    train = [np.concatenate(parts) for parts in zip(*batches[:-1])]
    # (N, 3, 32, 32) channels first in the pickles -> (N, 32, 32, 3) for PNG
    return ((train[0].transpose(0, 2, 3, 1), train[1]),
            (batches[-1][0].transpose(0, 2, 3, 1), np.asarray(batches[-1][1])))


def one_line(error: Exception) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def main() -> None:
    parser = cli.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True, choices=sorted(CLASS_NAMES),
                        help="which keras.datasets dataset")
    parser.add_argument("--output", type=Path, required=True,
                        help="dataset folder to create (train/ and test/ inside)")
    parser.add_argument("--limit", type=cli.positive_int, default=None, metavar="N",
                        help="keep the first N images of each class in train and in test "
                             "(default: all)")
    parser.add_argument("--archive", type=Path, default=None,
                        help="read this local copy of keras' download instead of "
                             "downloading (see the formats above)")
    parser.add_argument("--force", action="store_true",
                        help="replace train/ and test/ in a non-empty --output")
    args = parser.parse_args()
    if args.archive is not None and not args.archive.exists():
        fail(f"--archive {args.archive}: no such file or folder")
    if args.name == "fashion_mnist" and args.archive is not None and not args.archive.is_dir():
        fail(f"--archive {args.archive}: for fashion_mnist, give the folder holding the four "
             "*-ubyte.gz files")
    check_output(args.output, args.force)

    if args.archive is None:
        (x_train, y_train), (x_test, y_test) = download(args.name)
    else:
        try:
            (x_train, y_train), (x_test, y_test) = read_archive(args.name, args.archive)
        except Exception as error:  # whatever the parsing trips on, the archive is at fault
            fail(f"--archive {args.archive} is not a readable {args.name} archive "
                 f"({type(error).__name__}: {one_line(error)})")

    prepare_output(args.output, ["train", "test"])
    for split, images, labels in (("train", x_train, y_train), ("test", x_test, y_test)):
        try:
            counts = write_class_folders(images, labels, CLASS_NAMES[args.name],
                                         args.output / split, args.limit)
        except ValueError as error:
            fail(f"{args.name} {split} data does not look right ({error})")
        except OSError as error:
            fail(f"could not write to {args.output} ({error})")
        print(f"{split}: {describe_counts(counts)} -> {args.output / split}", flush=True)


if __name__ == "__main__":
    main()
