"""The files of one run belong together: one output path each, and readers refuse another run's.

Cheap cases: the scripts refuse before importing TensorFlow. The training runs
themselves are in test_outputs.py.
"""

import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from conftest import make_image, run_without_tensorflow
from pyimagesearch import persistence, run_files


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "a folder with spaces"
    (root / "data" / "red").mkdir(parents=True)
    make_image(root / "data" / "red" / "0.png")
    return root


@pytest.mark.parametrize("outputs, fragment", [
    ({"labelbin": "same.png", "plot": "same.png"}, "--labelbin same.png and --plot same.png are"),
    ({"labelbin": "m.model.tflite"}, "--labelbin m.model.tflite and the model's LiteRT copy"),
    ({"plot": "m.model.report.html"}, "--plot m.model.report.html and the model's run page"),
    ({"labelbin": "link.model"}, "--model m.model and --labelbin link.model are one file"),
    ({"plot": "m.model.run/plot.png"}, "inside the model's run folder"),
])
def test_one_file_for_two_outputs_is_refused(folder, monkeypatch, outputs, fragment):
    from pyimagesearch import training

    monkeypatch.chdir(folder)
    os.symlink("m.model", folder / "link.model")  # the same file by another name
    settings = {"model": "m.model", "labelbin": "lb.pickle", "plot": "plot.png", **outputs}
    with pytest.raises(training.OutputPathError, match=fragment.replace(".", r"\.")):
        training.check_outputs(settings)


def test_train_py_refuses_the_label_file_over_the_model_before_tensorflow(folder):
    """It exited 0, and the label pickle had overwritten the model."""
    stderr = run_without_tensorflow("train", ["-d", "data", "-m", "m.model", "-l", "m.model"],
                                    cwd=folder)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "--model m.model and --labelbin m.model are one file" in lines[0]
    assert not os.path.lexists(folder / "m.model")


def model_of_run(folder, run_id):
    """A stand-in model file carrying `run_id` in its description, and a label file.

    The refusals come before either is loaded: only the description is read.
    """
    model, labels = folder / "tiny.model", folder / "lb.pickle"
    with zipfile.ZipFile(model, "w") as archive:
        archive.writestr("config.json", "{}")
    persistence.embed_description(model, {"format": "pokedex", "run_id": run_id})
    labels.write_bytes(b"labels")
    return model, labels


def test_evaluate_refuses_a_split_or_an_epoch_of_another_run(folder):
    """A run killed between its renames left its split and epochs beside the previous model."""
    model, labels = model_of_run(folder, "aaaa")
    record = run_files.split_record(folder / "data", {"train": [], "val": [], "test": []}, "bbbb")
    with open(run_files.split_path(model), "w") as handle:
        json.dump(record, handle)
    stderr = run_without_tensorflow("evaluate", ["-m", model, "-l", labels, "--split", "val"],
                                    cwd=folder)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "another training run (run id bbbb)" in lines[0], stderr
    assert "(run id aaaa)" in lines[0]

    weights = [np.zeros(2)]
    run_files.save_epoch(model, 1, weights, "bbbb")  # the newer, interrupted run's
    run_files.save_epoch(model, 2, weights, "aaaa")  # the model's own
    stderr = run_without_tensorflow("evaluate", ["-m", model, "-l", labels, "-d", "data",
                                                 "--epoch", "1"], cwd=folder)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "--epoch 1:" in lines[0] and "run id bbbb" in lines[0], stderr
    assert "the model's own kept epochs: 2" in lines[0]
    assert run_files.check_epoch(str(model), 2).endswith("epoch-0002.aaaa.weights.npz")
    assert run_files.kept_epochs(str(model)) == [2]
    run_files.remove_epochs(str(model), keep={"aaaa"})
    assert os.listdir(run_files.epochs_folder(model)) == ["epoch-0002.aaaa.weights.npz"]


def test_evaluate_refuses_a_prefix_whose_report_overwrites_the_labels(folder):
    model, labels = model_of_run(folder, "aaaa")
    labels = labels.rename(folder / "x.report.txt")
    stderr = run_without_tensorflow("evaluate", ["-m", model, "-l", labels, "-d", "data",
                                                 "--output-prefix", folder / "x"], cwd=folder)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "would overwrite -l/--labelbin" in lines[0], stderr


def test_only_temporaries_of_dead_writers_are_removed(tmp_path):
    dead = _dead_pid()
    model = tmp_path / "m.model"
    stale = [tmp_path / f".m.model.{dead}.ab12cd34.tmp.keras",
             tmp_path / f"..m.model.report.txt.{dead}.x1.tmp.txt.{dead}.y2.tmp",  # nested
             tmp_path / "m.model.run" / f".state.json.{dead}.z3.tmp"]
    kept = [tmp_path / f".m.model.{os.getpid()}.ab12cd34.tmp.keras",  # a writer still running
            tmp_path / f".other.model.{dead}.ab12cd34.tmp.keras",  # not this model's
            tmp_path / "notes.tmp"]
    (tmp_path / "m.model.run").mkdir()
    for path in stale + kept:
        path.write_bytes(b"x")
    removed = persistence.remove_stale_temporaries([model, f"{model}.report.txt"],
                                                   [tmp_path / "m.model.run"])
    assert sorted(removed) == sorted(map(str, stale))
    assert all(path.exists() for path in kept)


def _dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid
