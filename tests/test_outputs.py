"""The outputs of one training run land together, and an interrupted run leaves nothing behind."""

import os

import pytest

pytest.importorskip("tensorflow")

from conftest import training_settings  # noqa: E402
from pyimagesearch import training  # noqa: E402
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


def settings_for(root, dataset):
    return training_settings(root, dataset=str(dataset), epochs=2, test_split=0.2)


def test_a_run_writes_every_output(tmp_path, dataset):
    training.train(settings_for(tmp_path, dataset), log=lambda m: None)
    for name in OUTPUTS:
        assert (tmp_path / name).stat().st_size > 0, name
    assert not leftovers(tmp_path)


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
