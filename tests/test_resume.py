"""Faults during training, in-process: Ctrl-C, resume, changed classes, --restart.

The real-process SIGINT + SIGKILL test is in test_kill_resume.py."""

import json
import os
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


def test_changed_class_folders_refuse_to_resume(interrupted_run):
    root, _ = interrupted_run
    with pytest.raises(ResumeError, match="--image-size was 16"):
        training.train(settings_for(root, image_size=24), log=lambda message: None)
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
