"""What a training run leaves beside the model for evaluate.py: its split and its epochs.

    <model>.split.json      the dataset folder, the run id of the model it belongs to and
                            the content hash (sha256) of every image of each part,
                            {"train": [...], "val": [...], "test": [...]}, written with
                            the model (evaluate.py --split)
    <model>.epochs/         with train.py --keep-epochs, every epoch's weights as
                            epoch-0007.<run id>.weights.npz (plain arrays, model.get_weights()
                            order: no optimizer state), evaluate.py --epoch 7

The run id is the one inside the model (its description): a reader takes only the
files of the model's own run. A run that was stopped, or killed between renaming its
outputs, can leave files of another run beside the model; they are refused, never
mixed in. The epochs of the model on disk stay until a new model replaces it, and
a new run keeps its epochs beside them under its own run id. Epoch files named
without a run id come from an older train.py and are taken as the model's.

The run folder (<model>.run/) holds the split too, but it is removed once the model is
saved; these stay.
"""

import json
import os
import re

import numpy as np

from pyimagesearch import persistence

PARTS = {"train": "training", "val": "validation", "test": "test"}
EPOCH_FILE = re.compile(r"^epoch-(\d+)(?:\.([0-9a-f]+))?\.weights\.npz$")


class RunFileError(ValueError):
    """A split file or kept epoch that is missing or unreadable (one line, names the fix)."""


def split_path(model_path):
    return persistence.sidecar_path(model_path, "split")


def split_record(dataset, split_state, run_id):
    """The JSON of <model>.split.json for a split stored by `Split.to_state()`."""
    return {"dataset": os.path.abspath(dataset), "run_id": run_id, "parts": split_state}


def model_run_id(model_path):
    """The run id inside the model's description, or None (a model from elsewhere)."""
    return (persistence.read_description(model_path) or {}).get("run_id")


def read_split(model_path):
    """(dataset folder, {part: set of sha256}) from <model>.split.json, if it is the model's."""
    path = split_path(model_path)
    try:
        with open(path, encoding="utf-8") as handle:
            record = json.load(handle)
        dataset, parts = record["dataset"], {part: set(record["parts"][part]) for part in PARTS}
        run_id = record.get("run_id")  # None: an older train.py's, which wrote none
    except FileNotFoundError:
        raise RunFileError(f"{path} not found: the model's split is saved beside it by "
                           "train.py since --split existed; train it again to score a part "
                           "of its split") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise RunFileError(f"{path}: unreadable split file ({error})") from None
    if run_id is not None and run_id != model_run_id(model_path):
        raise RunFileError(_other_run(path, run_id, model_path,
                                      "a train.py run was stopped while saving its outputs; "
                                      "run that train.py command again"))
    return dataset, parts


def _other_run(path, run_id, model_path, what_to_do):
    return (f"{path} belongs to another training run (run id {run_id}) than {model_path} "
            f"(run id {model_run_id(model_path) or 'none'}); {what_to_do}")


def epochs_folder(model_path):
    return f"{model_path}.epochs"


def epoch_path(model_path, epoch, run_id):
    name = f"epoch-{epoch:04d}" + (f".{run_id}" if run_id else "") + ".weights.npz"
    return os.path.join(epochs_folder(model_path), name)


def save_epoch(model_path, epoch, weights, run_id):
    """Write one epoch's weights (a list of arrays) of run `run_id` atomically."""
    os.makedirs(epochs_folder(model_path), exist_ok=True)
    with persistence.atomic_path(epoch_path(model_path, epoch, run_id), ".npz") as temporary:
        with open(temporary, "wb") as handle:
            np.savez(handle, *weights)


def _epoch_files(model_path):
    """{(epoch, run id or None): file name} of <model>.epochs/."""
    try:
        names = os.listdir(epochs_folder(model_path))
    except OSError:
        return {}
    return {(int(match.group(1)), match.group(2)): match.group(0)
            for match in map(EPOCH_FILE.match, names) if match}


def kept_epochs(model_path, run_id=None):
    """The epoch numbers kept for run `run_id`, or by default the model's, sorted.

    Files without a run id (an older train.py) count as the model's.
    """
    owners = {run_id} if run_id else {model_run_id(model_path), None}
    return sorted({epoch for epoch, owner in _epoch_files(model_path) if owner in owners})


def remove_epochs(model_path, keep):
    """Remove the kept epochs of every run but those in `keep` (run ids; None: unnamed files)."""
    for (_, owner), name in _epoch_files(model_path).items():
        if owner not in keep:
            try:
                os.remove(os.path.join(epochs_folder(model_path), name))
            except FileNotFoundError:
                pass
    try:
        os.rmdir(epochs_folder(model_path))  # only if nothing is left in it
    except OSError:
        pass


def load_epoch(model, model_path, epoch):
    """Put epoch `epoch`'s weights into `model` (the trained model, same network)."""
    path = check_epoch(model_path, epoch)
    try:
        with np.load(path, allow_pickle=False) as arrays:
            model.set_weights([arrays[f"arr_{i}"] for i in range(len(arrays.files))])
    except (OSError, ValueError) as error:
        raise RunFileError(f"{path}: does not fit {model_path} "
                           f"({str(error).strip().splitlines()[0][:200]})") from None


def check_epoch(model_path, epoch):
    """The file of the model's epoch `epoch`; RunFileError (one line: why, what to do) if none."""
    files, run_id = _epoch_files(model_path), model_run_id(model_path)
    folder = epochs_folder(model_path)
    for owner in (run_id, None):
        if (epoch, owner) in files:
            return os.path.join(folder, files[epoch, owner])
    if not files:
        raise RunFileError(f"--epoch {epoch}: {model_path} kept no epochs "
                           f"({folder}/ is missing); train with "
                           "--keep-epochs to keep every epoch's weights")
    kept = kept_epochs(model_path)
    own = (f"the model's own kept epochs: {_ranges(kept)}" if kept else
           "the model kept none (train with --keep-epochs to keep every epoch's weights)")
    others = sorted({owner for number, owner in files if number == epoch})
    if others:
        raise RunFileError(f"--epoch {epoch}: " + _other_run(
            os.path.join(folder, files[epoch, others[0]]), others[0], model_path, own))
    if not kept:
        raise RunFileError(f"--epoch {epoch}: {folder}/ holds epochs of other training runs "
                           f"only; {own}")
    raise RunFileError(f"--epoch {epoch}: not kept; {folder}/ holds epochs {_ranges(kept)}")


def _ranges(numbers):
    """[1, 2, 3, 5] -> '1-3, 5'."""
    spans, start = [], numbers[0]
    for previous, number in zip(numbers, numbers[1:] + [None]):
        if number != previous + 1:
            spans.append(str(start) if start == previous else f"{start}-{previous}")
            start = number
    return ", ".join(spans)
