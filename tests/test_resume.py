"""Faults during training, in-process: Ctrl-C, resume, changed classes, --restart.

The real-process SIGINT + SIGKILL test is in test_kill_resume.py."""

import json
import os
import shutil
import signal

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("tensorflow")
import keras  # noqa: E402

from conftest import training_settings  # noqa: E402
from pyimagesearch import training  # noqa: E402
from pyimagesearch.checkpoints import ResumeError  # noqa: E402
from pyimagesearch.inference import Classifier  # noqa: E402



def make_dataset(root, classes=("dark", "light"), count=40):
    rng = np.random.default_rng(0)
    for index, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True)
        level = 40 + 170 * index / max(1, len(classes) - 1)
        for image in range(count):
            pixels = np.clip(rng.normal(level, 20, (20, 20, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{image}.png")


settings_for = training_settings


def read_state(root):
    try:
        return json.loads((root / "m.model.run" / "state.json").read_text())
    except (OSError, ValueError):
        return None


class CtrlCAtEpoch(keras.callbacks.Callback):
    """Delivers a real SIGINT to this process in the middle of an epoch."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch, self.current = epoch, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.current == self.epoch and batch == 1:
            signal.raise_signal(signal.SIGINT)


@pytest.fixture
def interrupted_run(tmp_path, monkeypatch):
    """Train, Ctrl-C in epoch 3; the previous model/labels/plot are placeholders."""
    make_dataset(tmp_path / "data")
    for name in ("m.model", "lb.pickle", "plot.png"):
        (tmp_path / name).write_bytes(b"previous " + name.encode())
    real_fit = keras.Model.fit

    def fit_with_ctrl_c(self, *args, **kwargs):
        kwargs["callbacks"] = list(kwargs["callbacks"]) + [CtrlCAtEpoch(2)]
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", fit_with_ctrl_c)
    with pytest.raises(training.Interrupted) as stop:
        training.train(settings_for(tmp_path), log=lambda message: None)
    monkeypatch.setattr(keras.Model, "fit", real_fit)
    return tmp_path, stop.value


def test_ctrl_c_keeps_previous_outputs_and_the_completed_epochs(interrupted_run):
    root, stop = interrupted_run
    assert stop.epochs_done == 2 and stop.run_path.endswith("m.model.run")
    for name in ("m.model", "lb.pickle", "plot.png"):
        assert (root / name).read_bytes() == b"previous " + name.encode()
    assert read_state(root)["epoch"] == 2
    history = training.train(settings_for(root), log=lambda message: None)  # resumes
    assert len(history["loss"]) == 4
    assert (root / "m.model").read_bytes()[:2] == b"PK"


def test_changed_settings_dataset_or_class_folders_refuse_to_resume(interrupted_run):
    from pyimagesearch.dataset import DatasetError

    root, _ = interrupted_run
    with pytest.raises(ResumeError, match="--image-size was 16"):
        training.train(settings_for(root, image_size=24), log=lambda message: None)
    # Another dataset at the same path, with the same class names: not resumed.
    os.rename(root / "data", root / "dataset A")
    make_dataset(root / "data", count=40)
    for path in (root / "data").glob("*/*.png"):
        path.write_bytes(path.read_bytes() + b"another file")  # other content, same pixels
    with pytest.raises(DatasetError, match="data is not the dataset the checkpoint was made on: "
                                           "only 0 of the 80 images .*--restart"):
        training.train(settings_for(root), log=lambda message: None)
    shutil.rmtree(root / "data")
    os.rename(root / "dataset A", root / "data")
    make_dataset(root / "more", classes=("eevee",), count=8)
    os.rename(root / "more" / "eevee", root / "data" / "eevee")
    with pytest.raises(ResumeError, match="class folders changed.*added: eevee.*--restart"):
        training.train(settings_for(root), log=lambda message: None)
    history = training.train(settings_for(root, restart=True, epochs=1), log=lambda m: None)
    assert len(history["loss"]) == 1
    assert Classifier(str(root / "m.model"), str(root / "lb.pickle")).class_names == [
        "dark", "eevee", "light"]


def test_resume_without_a_checkpoint_is_a_clear_error(tmp_path):
    from pyimagesearch.dataset import DatasetError

    make_dataset(tmp_path / "data", count=6)
    with pytest.raises(DatasetError, match="--resume: no checkpoint to resume in .*m.model.run"):
        training.train(settings_for(tmp_path, resume=True), log=lambda message: None)


class ScriptedLosses(keras.callbacks.Callback):
    """Runs before the checkpoint callback and overwrites the logs it will read.

    val_losses[e] becomes epoch e's val_loss; nan_at=(epoch, batch) makes that
    batch's loss NaN, as a diverging run would.
    """

    def __init__(self, val_losses=None, nan_at=None):
        super().__init__()
        self.val_losses, self.nan_at, self.epoch = val_losses, nan_at, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.nan_at == (self.epoch, batch):
            logs["loss"] = float("nan")

    def on_epoch_end(self, epoch, logs=None):
        if self.val_losses is not None:
            logs["val_loss"] = self.val_losses[epoch]


@pytest.fixture
def scripted_fit(monkeypatch):
    """Install a ScriptedLosses callback in front of train()'s callbacks."""
    real_fit = keras.Model.fit

    def install(**script):
        def fit(self, *args, **kwargs):
            kwargs["callbacks"] = [ScriptedLosses(**script)] + list(kwargs["callbacks"])
            return real_fit(self, *args, **kwargs)

        monkeypatch.setattr(keras.Model, "fit", fit)

    return install


def test_patience_stops_exactly_n_epochs_after_the_best_and_keeps_the_best(tmp_path,
                                                                          scripted_fit):
    make_dataset(tmp_path / "data", count=12)
    scripted_fit(val_losses=[0.9, 0.5, 0.7, 0.6, 0.8, 0.1, 0.1, 0.1])
    history = training.train(settings_for(tmp_path, epochs=8, patience=3), log=lambda m: None)
    assert history["val_loss"] == pytest.approx([0.9, 0.5, 0.7, 0.6, 0.8])  # best 2, +3
    description = json.loads((tmp_path / "m.model.settings.json").read_text())
    assert description["best_epoch"] == 2 and description["epochs_run"] == 5


def test_restore_best_puts_back_the_best_epochs_weights_from_memory_and_from_disk(tmp_path):
    from pyimagesearch.callbacks import EpochCheckpoint
    from pyimagesearch.checkpoints import RunFolder, new_state

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    folder = RunFolder(str(tmp_path / "m.model"))
    state = new_state(["a", "b"], {})
    checkpoint = EpochCheckpoint(folder, state, patience=0, every_seconds=0)
    checkpoint.set_model(model)
    weights = {}
    for epoch, val_loss in enumerate([0.8, 0.3, 0.5]):
        model.set_weights([np.full(w.shape, epoch + 1.0, w.dtype) for w in model.get_weights()])
        weights[epoch + 1] = model.get_weights()
        checkpoint.on_epoch_end(epoch, {"loss": 1.0, "val_loss": val_loss})
    assert state["best_epoch"] == 2
    checkpoint.restore_best(model)
    for restored, best in zip(model.get_weights(), weights[2]):
        np.testing.assert_array_equal(restored, best)
    # A resumed run has only the disk: the best epoch's file, not the last epoch's.
    model.set_weights(weights[3])
    again = EpochCheckpoint(folder, folder.load_state(), patience=0)
    assert again.restore_best(model)
    for restored, best in zip(model.get_weights(), weights[2]):
        np.testing.assert_array_equal(restored, best)


@pytest.mark.parametrize("moment", ["test evaluation", "final save", "after patience ran out",
                                    "lower --epochs"])
def test_rerun_when_the_checkpoint_holds_the_last_epoch_writes_outputs_and_exits_0(
        tmp_path, monkeypatch, scripted_fit, moment):
    """Issue A1: this crashed with a traceback (restore_best used a model fit never set)."""
    make_dataset(tmp_path / "data", count=12)
    settings = settings_for(tmp_path, epochs=4, test_split=0.2)
    if moment == "after patience ran out":
        scripted_fit(val_losses=[0.5, 0.9, 0.9, 0.9])
        settings["patience"] = 2
    if moment == "lower --epochs":
        first = dict(settings, epochs=5)
        interrupt_at = "save_outputs"
    else:
        first = settings
        interrupt_at = "evaluate_test" if moment == "test evaluation" else "save_outputs"

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    real = getattr(training, interrupt_at)
    monkeypatch.setattr(training, interrupt_at, ctrl_c)
    with pytest.raises(training.Interrupted):
        training.train(first, log=lambda m: None)
    assert not (tmp_path / "m.model").exists()
    epochs_done = read_state(tmp_path)["epoch"]
    monkeypatch.setattr(training, interrupt_at, real)
    fits = []
    monkeypatch.setattr(keras.Model, "fit", lambda *a, **k: fits.append(1))
    messages = []
    history = training.train(settings, log=messages.append)  # the rerun
    assert fits == [] and len(history["loss"]) == epochs_done
    assert any("already holds the last epoch" in m for m in messages), messages
    description = json.loads((tmp_path / "m.model.settings.json").read_text())
    assert description["epochs_run"] == epochs_done
    if moment == "after patience ran out":
        assert description["best_epoch"] == 1 and epochs_done == 3
    assert (tmp_path / "m.model.metrics.json").exists()
    assert not (tmp_path / "m.model.run").exists()


def test_nan_loss_stops_with_the_epoch_named_and_saves_nothing(tmp_path, scripted_fit):
    make_dataset(tmp_path / "data", count=12)
    (tmp_path / "m.model").write_bytes(b"previous model")
    scripted_fit(nan_at=(1, 0))  # the first batch of epoch 2
    with pytest.raises(training.TrainingDiverged, match=r"epoch 2;.*--lr"):
        training.train(settings_for(tmp_path, epochs=4), log=lambda m: None)
    assert (tmp_path / "m.model").read_bytes() == b"previous model"


def test_a_nan_epoch_is_never_the_best(tmp_path):
    from pyimagesearch.callbacks import EpochCheckpoint
    from pyimagesearch.checkpoints import RunFolder, new_state

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    state = new_state(["a", "b"], {})
    checkpoint = EpochCheckpoint(RunFolder(str(tmp_path / "m")), state, patience=0,
                                 every_seconds=1e9)
    checkpoint.set_model(model)
    checkpoint.on_epoch_end(0, {"loss": 1.0, "val_loss": float("nan")})
    assert state["best_epoch"] is None and checkpoint.diverged == 1 and model.stop_training


def test_a_resumed_run_keeps_its_split_and_sends_new_files_to_training(tmp_path, monkeypatch):
    """Issue A3: the split used to be recomputed from the folder, moving test images into training."""
    import hashlib

    make_dataset(tmp_path / "data")
    settings = settings_for(tmp_path, test_split=0.2)
    real_fit = keras.Model.fit

    def fit_with_ctrl_c(self, *args, **kwargs):
        kwargs["callbacks"] = list(kwargs["callbacks"]) + [CtrlCAtEpoch(1)]
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", fit_with_ctrl_c)
    with pytest.raises(training.Interrupted):
        training.train(settings, log=lambda message: None)
    monkeypatch.setattr(keras.Model, "fit", real_fit)
    stored = read_state(tmp_path)["split"]
    rng = np.random.default_rng(7)
    for index in range(3):  # new, distinct images (noise, far apart in phash)
        pixels = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / "data" / "dark" / f"new {index}.png")
    os.remove(sorted((tmp_path / "data" / "light").iterdir())[0])
    messages = []
    training.train(settings, log=messages.append)
    assert any("3 new images go to training, 1 removed" in m for m in messages), messages
    description = json.loads((tmp_path / "m.model.settings.json").read_text())
    assert description["split"]["new_images_to_training"] == 3
    assert description["split"]["removed_since_split"] == 1
    # Exactly the stored validation and test images that still exist are held out now.
    present = {hashlib.sha256(path.read_bytes()).hexdigest()
               for path in (tmp_path / "data").rglob("*.png")}
    assert description["test_images"] == len(set(stored["test"]) & present) > 0
    assert description["val_images"] == len(set(stored["val"]) & present) > 0
    assert "3 new image(s) went to training" in (tmp_path / "m.model.report.txt").read_text()
