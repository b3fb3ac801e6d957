"""Checkpoints so a killed or interrupted training run can resume.

The run folder sits beside the model (`pokedex.model.run/`) and holds:

    state.json                 epoch, history, best epoch, patience counter,
                               class names, settings and the split (by
                               content hash of every image)
    epoch-0007.keras           the model after epoch 7 with the optimizer
                               state (Adam moments, step count)
    best-0005.weights.npz      weights of the epoch with the lowest val_loss
                               (none when that is the checkpointed epoch itself)

A full checkpoint is ~3x the weights (104 MB for SmallerVGGNet at 96 px), so
it is written when `--checkpoint-every` seconds have passed since the last one
(default 120 s), and at once on Ctrl-C or SIGTERM, not after every epoch:
a SIGKILL or power cut loses at most that much work, and the cost stays a
small fraction of training (writing every epoch cost ~7 GB and 22% of the
CPU time of the 20-epoch demo). The best epoch's weights are kept in memory
and written with the next checkpoint.

Every file is written under a new name and then `state.json` is atomically
replaced to point at it, so a SIGKILL or a full disk at any moment leaves a
consistent, loadable checkpoint (the previous one at worst). Keras's
BackupAndRestore does not keep the best epoch or the patience counter, and
overwrites its files in place; this does both safely. The folder is removed
once the final model is saved.
"""

import json
import os
import shutil

import numpy as np

from pyimagesearch import persistence
from pyimagesearch.dataset import DatasetError

# Settings that must match for a checkpoint to be continued meaningfully.
RESUME_KEYS = ("arch", "image_size", "channels", "val_split", "test_split", "seed", "augmenter", "batch_size", "lr",
               "lr_schedule", "class_weight", "color_augment", "weights")
# What a checkpoint written before a setting existed was trained with.
OLDER_DEFAULTS = {"lr_schedule": "tutorial", "class_weight": "none", "color_augment": False,
                  "arch": "smallervggnet", "channels": 3}


class ResumeError(DatasetError):
    """A checkpoint exists but cannot be continued with these data or settings."""


class RunFolder:
    def __init__(self, model_path):
        self.path = f"{model_path}.run"

    def _file(self, name):
        return os.path.join(self.path, name)

    def load_state(self):
        """The saved state dict, or None when there is nothing to resume."""
        try:
            with open(self._file("state.json")) as handle:
                state = json.load(handle)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return None  # an unreadable state is treated as no checkpoint
        if not isinstance(state, dict) or not os.path.exists(
                self._file(state.get("checkpoint", ""))):
            return None
        return state

    def check_resumable(self, state, class_names, settings):
        """Raise ResumeError unless `state` was made with these classes and settings."""
        if state["class_names"] != class_names:
            added = sorted(set(class_names) - set(state["class_names"]))
            removed = sorted(set(state["class_names"]) - set(class_names))
            raise ResumeError(
                f"the class folders changed since the checkpoint in {self.path} "
                f"(added: {', '.join(added) or 'none'}; removed: {', '.join(removed) or 'none'}); "
                "run again with --restart to train from scratch")
        changed = [key for key in RESUME_KEYS
                   if state["settings"].get(key, OLDER_DEFAULTS.get(key)) != settings.get(
                       key, OLDER_DEFAULTS.get(key))]
        if changed:
            detail = ", ".join(f"--{k.replace('_', '-')} was "
                               f"{state['settings'].get(k, OLDER_DEFAULTS.get(k))}"
                               for k in changed)
            raise ResumeError(f"settings differ from the checkpoint in {self.path} ({detail}); "
                              "use the same flags to resume, or --restart")

    def load_model(self, state):
        """The checkpointed model, compiled, with its optimizer state."""
        import keras

        return keras.models.load_model(self._file(state["checkpoint"]), compile=True,
                                       safe_mode=True)

    def load_best_weights(self, model, state):
        """Load the best epoch's weights from disk into `model`; False if none were saved."""
        name = state.get("best_weights")
        if not name:
            return False
        if name.endswith(".npz"):
            with np.load(self._file(name), allow_pickle=False) as arrays:
                model.set_weights([arrays[f"arr_{i}"] for i in range(len(arrays.files))])
        else:  # the checkpoint itself (.keras) was the best epoch
            model.load_weights(self._file(name))
        return True

    def save(self, model, state, best_weights=None, at_epoch_end=False):
        """Write the model (and, if given, the best epoch's weights), then point state.json at them.

        best_weights: a list of arrays (model.get_weights() of the best epoch)
            not yet on disk, or None when the file named in the state is current.
        at_epoch_end: the model holds the weights of epoch state["epoch"]; when
            that is the best epoch, the checkpoint itself serves as the best
            weights and no second file is written (35 MB saved).
        Returns the number of bytes written.
        """
        os.makedirs(self.path, exist_ok=True)
        epoch = state["epoch"]
        checkpoint = f"epoch-{epoch:04d}.keras"
        written = 0
        with persistence.atomic_path(self._file(checkpoint), ".keras") as temporary:
            model.save(temporary)
            written += os.path.getsize(temporary)
        state["checkpoint"] = checkpoint
        if best_weights is not None and at_epoch_end and state["best_epoch"] == epoch:
            state["best_weights"] = checkpoint  # load_weights reads a .keras file too
        elif best_weights is not None:
            # Plain arrays, not model.save_weights: Keras 3 puts the optimizer's
            # state in a .weights.h5 too (104 MB instead of 35 MB).
            best = f"best-{state['best_epoch']:04d}.weights.npz"
            with persistence.atomic_path(self._file(best), ".npz") as temporary:
                with open(temporary, "wb") as handle:
                    np.savez(handle, *best_weights)
                written += os.path.getsize(temporary)
            state["best_weights"] = best
        persistence.write_json_atomic(self._file("state.json"), state)
        keep = {"state.json", state["checkpoint"], state.get("best_weights")}
        for name in os.listdir(self.path):  # older checkpoints, now unreferenced
            if name not in keep and not name.startswith("."):
                os.remove(self._file(name))
        return written

    def clear(self):
        shutil.rmtree(self.path, ignore_errors=True)


def new_state(class_names, settings, split_state=None):
    return {"epoch": 0, "history": {}, "best_val_loss": None, "best_epoch": None, "wait": 0,
            "class_names": class_names, "settings": dict(settings), "split": split_state}
