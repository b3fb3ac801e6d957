"""Per-epoch checkpoints so a killed or interrupted training run can resume.

The run folder sits beside the model (`pokedex.model.run/`) and holds:

    state.json                 epoch, history, best epoch, class names, settings
    epoch-0007.keras           the model after the last completed epoch, with
                               the optimizer state (Adam moments, step count)
    best-0005.weights.h5       weights of the epoch with the lowest val_loss

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

import keras

from pyimagesearch import persistence
from pyimagesearch.dataset import DatasetError

# Settings that must match for a checkpoint to be continued meaningfully.
RESUME_KEYS = ("image_size", "val_split", "test_split", "seed", "augmenter", "batch_size", "lr")


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
        if not os.path.exists(self._file(state.get("checkpoint", ""))):
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
        changed = [key for key in RESUME_KEYS if state["settings"].get(key) != settings[key]]
        if changed:
            detail = ", ".join(f"--{k.replace('_', '-')} was {state['settings'].get(k)}"
                               for k in changed)
            raise ResumeError(f"settings differ from the checkpoint in {self.path} ({detail}); "
                              "use the same flags to resume, or --restart")

    def load_model(self, state):
        """The checkpointed model, compiled, with its optimizer state."""
        return keras.models.load_model(self._file(state["checkpoint"]), compile=True,
                                       safe_mode=True)

    def best_weights_path(self, state):
        return self._file(state["best_weights"]) if state.get("best_weights") else None

    def save(self, model, state, best_improved):
        """Write this epoch's model (and best weights), then point state.json at them."""
        os.makedirs(self.path, exist_ok=True)
        epoch = state["epoch"]
        checkpoint = f"epoch-{epoch:04d}.keras"
        with persistence.atomic_path(self._file(checkpoint), ".keras") as temporary:
            model.save(temporary)
        state["checkpoint"] = checkpoint
        if best_improved:
            best = f"best-{epoch:04d}.weights.h5"
            with persistence.atomic_path(self._file(best), ".weights.h5") as temporary:
                model.save_weights(temporary)
            state["best_weights"] = best
        persistence.write_json_atomic(self._file("state.json"), state)
        keep = {"state.json", state["checkpoint"], state.get("best_weights")}
        for name in os.listdir(self.path):  # older checkpoints, now unreferenced
            if name not in keep and not name.startswith("."):
                os.remove(self._file(name))

    def clear(self):
        shutil.rmtree(self.path, ignore_errors=True)


def new_state(class_names, settings):
    return {"epoch": 0, "history": {}, "best_val_loss": None, "best_epoch": None, "wait": 0,
            "class_names": class_names, "settings": dict(settings)}
