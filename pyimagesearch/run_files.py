"""What a training run leaves beside the model for evaluate.py: its split and its epochs.

    <model>.split.json      the dataset folder and the content hash (sha256) of every
                            image of each part, {"train": [...], "val": [...], "test": [...]},
                            written with the model (evaluate.py --split)
    <model>.epochs/         with train.py --keep-epochs, every epoch's weights as
                            epoch-0007.weights.npz (plain arrays, model.get_weights()
                            order: no optimizer state), evaluate.py --epoch 7

The run folder (<model>.run/) holds the split too, but it is removed once the model is
saved; these stay. A fresh run removes the epochs of an earlier one.
"""

import json
import os
import re
import shutil

import numpy as np

from pyimagesearch import persistence

PARTS = {"train": "training", "val": "validation", "test": "test"}
EPOCH_FILE = re.compile(r"^epoch-(\d+)\.weights\.npz$")


class RunFileError(ValueError):
    """A split file or kept epoch that is missing or unreadable (one line, names the fix)."""


def split_path(model_path):
    return persistence.sidecar_path(model_path, "split")


def split_record(dataset, split_state):
    """The JSON of <model>.split.json for a split stored by `Split.to_state()`."""
    return {"dataset": os.path.abspath(dataset), "parts": split_state}


def read_split(model_path):
    """(dataset folder, {part: set of sha256}) from <model>.split.json."""
    path = split_path(model_path)
    try:
        with open(path, encoding="utf-8") as handle:
            record = json.load(handle)
        return record["dataset"], {part: set(record["parts"][part]) for part in PARTS}
    except FileNotFoundError:
        raise RunFileError(f"{path} not found: the model's split is saved beside it by "
                           "train.py since --split existed; train it again to score a part "
                           "of its split") from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise RunFileError(f"{path}: unreadable split file ({error})") from None


def epochs_folder(model_path):
    return f"{model_path}.epochs"


def epoch_path(model_path, epoch):
    return os.path.join(epochs_folder(model_path), f"epoch-{epoch:04d}.weights.npz")


def save_epoch(model_path, epoch, weights):
    """Write one epoch's weights (a list of arrays) atomically."""
    os.makedirs(epochs_folder(model_path), exist_ok=True)
    with persistence.atomic_path(epoch_path(model_path, epoch), ".npz") as temporary:
        with open(temporary, "wb") as handle:
            np.savez(handle, *weights)


def kept_epochs(model_path):
    """The epoch numbers whose weights are in <model>.epochs/, sorted."""
    try:
        names = os.listdir(epochs_folder(model_path))
    except OSError:
        return []
    return sorted(int(match.group(1)) for match in map(EPOCH_FILE.match, names) if match)


def load_epoch(model, model_path, epoch):
    """Put epoch `epoch`'s weights into `model` (the trained model, same network)."""
    check_epoch(model_path, epoch)
    try:
        with np.load(epoch_path(model_path, epoch), allow_pickle=False) as arrays:
            model.set_weights([arrays[f"arr_{i}"] for i in range(len(arrays.files))])
    except (OSError, ValueError) as error:
        raise RunFileError(f"{epoch_path(model_path, epoch)}: does not fit {model_path} "
                           f"({str(error).strip().splitlines()[0][:200]})") from None


def check_epoch(model_path, epoch):
    """Raise RunFileError (one line: why, and what to do) unless epoch `epoch` was kept."""
    kept = kept_epochs(model_path)
    if not kept:
        raise RunFileError(f"--epoch {epoch}: {model_path} kept no epochs "
                           f"({epochs_folder(model_path)}/ is missing); train with "
                           "--keep-epochs to keep every epoch's weights")
    if epoch not in kept:
        raise RunFileError(f"--epoch {epoch}: not kept; {epochs_folder(model_path)}/ holds "
                           f"epochs {_ranges(kept)}")


def clear_epochs(model_path):
    shutil.rmtree(epochs_folder(model_path), ignore_errors=True)


def _ranges(numbers):
    """[1, 2, 3, 5] -> '1-3, 5'."""
    spans, start = [], numbers[0]
    for previous, number in zip(numbers, numbers[1:] + [None]):
        if number != previous + 1:
            spans.append(str(start) if start == previous else f"{start}-{previous}")
            start = number
    return ", ".join(spans)
