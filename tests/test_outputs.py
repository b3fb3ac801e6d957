"""The outputs of one training run land together, and an interrupted run leaves nothing behind."""

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("tensorflow")

from conftest import training_settings  # noqa: E402
from pyimagesearch import run_files, training  # noqa: E402
from test_resume import make_dataset  # noqa: E402

# Every file a run with a test split writes beside the model, and the plot.
OUTPUTS = ("m.model", "lb.pickle", "plot.png", "m.model.tflite", "m.model.labels.json",
           "m.model.settings.json", "m.model.report.txt", "m.model.metrics.json", "m.model.confusion.png", "m.model.worst.png")


def plant_previous_outputs(root):
    for name in OUTPUTS:
        (root / name).write_bytes(b"previous " + name.encode())


def assert_previous_outputs_whole(root):
    for name in OUTPUTS:
        assert (root / name).read_bytes() == b"previous " + name.encode(), name


def leftovers(root):
    """Temporary files anywhere under root (atomic writes, decode files, locks)."""
    found = []
    for folder, _, names in os.walk(root):
        found += [os.path.join(folder, name) for name in names
                  if ".tmp" in name or name.endswith(".lock")]
    return found


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("outputs")
    make_dataset(root / "shared data", count=12)
    return root / "shared data"


def settings_for(root, dataset, **overrides):
    return training_settings(root, dataset=str(dataset), epochs=2, test_split=0.2, **overrides)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, dataset):
    """One run with --keep-epochs, and what it logged."""
    root = tmp_path_factory.mktemp("first run")
    logs = []
    training.train(settings_for(root, dataset, keep_epochs=True), log=logs.append)
    return root, logs


def test_a_run_writes_every_output_with_its_run_id(first_run):
    from PIL import Image

    from pyimagesearch import litert

    root, logs = first_run
    for name in OUTPUTS:
        assert (root / name).stat().st_size > 0, name
    assert not leftovers(root)
    run_id = run_files.model_run_id(root / "m.model")
    assert len(run_id) == 32
    for name in ("m.model.split.json", "m.model.settings.json", "m.model.metrics.json"):
        assert json.loads((root / name).read_text())["run_id"] == run_id, name
    assert litert.read_metadata(root / "m.model.tflite")["run_id"] == run_id
    for name in ("plot.png", "m.model.confusion.png", "m.model.worst.png"):
        with Image.open(root / name) as image:
            assert image.text["pokedex-run-id"] == run_id, name
    assert f"run id {run_id}" in (root / "m.model.report.txt").read_text()
    assert f'<meta name="pokedex-run-id" content="{run_id}">' in \
        (root / "m.model.report.html").read_text()
    assert sorted(os.listdir(root / "m.model.epochs")) == [
        f"epoch-000{epoch}.{run_id}.weights.npz" for epoch in (1, 2)]
    # The files are named once renamed, not as the temporaries they were written to.
    assert not [line for line in logs if ".tmp" in line], logs
    report = [line for line in logs if line.startswith("[INFO] wrote the test report")]
    assert len(report) == 1 and str(root / "m.model.metrics.json") in report[0]


def test_a_new_run_keeps_the_previous_models_epochs_until_it_replaces_it(
        first_run, tmp_path, dataset, monkeypatch):
    """A second run used to clear <model>.epochs/ when it started (stopped before the end,
    it left the previous model without its epochs, and `--epoch 1` scored the new run's);
    killed between its final renames, it mixed the two runs' files (evaluate.py --split
    scored the new split's test images with the old model); its temporaries stayed."""
    import shutil

    root = tmp_path / "second run"
    shutil.copytree(first_run[0], root)
    # Every epoch checkpointed, so the same command then only has to save.
    settings = settings_for(root, dataset, keep_epochs=True, restart=True, checkpoint_every=0)
    model = settings["model"]
    first = json.loads((root / "m.model.settings.json").read_text())["run_id"]
    previous = {name: (root / "m.model.epochs" / name).read_bytes()
                for name in os.listdir(root / "m.model.epochs")}
    previous_model = (root / "m.model").read_bytes()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a process id no longer running: the killed run's
    stale = [root / f".m.model.{dead.pid}.k1ll3d00.tmp.keras",
             root / f".plot.png.{dead.pid}.k1ll3d00.tmp.png"]
    for path in stale:
        path.write_bytes(b"left by a killed run")

    # Killed at its last rename, the model's: every other file is already renamed.
    real_replace = os.replace

    def killed_at_the_model(source, target):
        if os.fspath(target) == model:
            raise OSError(5, "killed")
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", killed_at_the_model)
    with pytest.raises(OSError):
        training.train(settings, log=lambda m: None)
    monkeypatch.setattr(os, "replace", real_replace)
    for name, data in previous.items():  # the model's epochs, whole, and still its own
        assert (root / "m.model.epochs" / name).read_bytes() == data
    assert (root / "m.model").read_bytes() == previous_model
    assert not any(path.exists() for path in stale)
    assert run_files.check_epoch(model, 1).endswith(f"epoch-0001.{first}.weights.npz")
    second = json.loads((root / "m.model.split.json").read_text())["run_id"]
    assert second != first and run_files.kept_epochs(model, second) == [1, 2]
    with pytest.raises(run_files.RunFileError, match=f"another training run .run id {second}"):
        run_files.read_split(model)

    # The same command again finishes: the new model, with its own epochs only.
    training.train({**settings, "restart": False}, log=lambda m: None)
    assert run_files.model_run_id(model) == second
    assert run_files.read_split(model)[0] == os.path.abspath(dataset)
    assert sorted(os.listdir(root / "m.model.epochs")) == [
        f"epoch-000{epoch}.{second}.weights.npz" for epoch in (1, 2)]
    assert not leftovers(root)


@pytest.mark.parametrize("failing", ["plot_history", "export_tflite"])
def test_a_failure_while_saving_leaves_the_previous_set_whole(tmp_path, dataset, monkeypatch,
                                                              failing):
    """The test report used to be written before the model: a failure in between mixed runs."""
    plant_previous_outputs(tmp_path)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(training, failing, disk_full)
    with pytest.raises(OSError):
        training.train(settings_for(tmp_path, dataset), log=lambda m: None)
    assert_previous_outputs_whole(tmp_path)
    assert not leftovers(tmp_path)


@pytest.mark.parametrize("moment", ["decoding", "input pipeline", "fit", "evaluate_test",
                                    "export_tflite", "plot_history"])
def test_ctrl_c_at_any_moment_leaves_no_temporaries_and_the_previous_outputs(
        tmp_path, dataset, monkeypatch, moment):
    import keras

    plant_previous_outputs(tmp_path)
    settings = settings_for(tmp_path, dataset)
    settings["cache_dir"] = str(tmp_path / "cache")  # a cold cache: decoding happens here

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    if moment == "decoding":
        from pyimagesearch import dataset as dataset_lib

        monkeypatch.setattr(dataset_lib, "load_image", ctrl_c)
    elif moment == "input pipeline":  # before fit() has its checkpoint callback
        from pyimagesearch import pipeline

        monkeypatch.setattr(pipeline, "make_dataset", ctrl_c)
    elif moment == "fit":
        monkeypatch.setattr(keras.Model, "fit", ctrl_c)
    else:
        monkeypatch.setattr(training, moment, ctrl_c)
    with pytest.raises((KeyboardInterrupt, training.Interrupted)):
        training.train(settings, log=lambda m: None)
    assert_previous_outputs_whole(tmp_path)
    assert not leftovers(tmp_path)
    monkeypatch.undo()
    training.train(settings, log=lambda m: None)  # and the same command then finishes
    assert (tmp_path / "m.model").read_bytes()[:2] == b"PK"
    assert not leftovers(tmp_path)
