"""The model knows its data: the fingerprint, the one-line warning, and --drift's verdict."""

import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import training_settings
from pyimagesearch import confidence, drift


def make_class(folder, color, count, seed):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        pixels = np.clip(rng.normal(color, 20, (24, 24, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{index}.png")


@pytest.fixture
def folder(tmp_path):
    make_class(tmp_path / "data" / "dark", (40, 40, 40), 10, 0)
    make_class(tmp_path / "data" / "light", (215, 215, 215), 10, 1)
    return tmp_path / "data"


def test_the_fingerprint_notices_new_and_lost_classes_and_big_moves_only(folder):
    recorded = drift.fingerprint(str(folder), ["dark", "light"], [0] * 10 + [1] * 10,
                                 [f"{i:064x}" for i in range(20)])
    assert recorded["files_per_class"] == {"dark": 10, "light": 10}
    assert drift.dataset_changes(recorded) is None  # unchanged
    (folder / "light" / "9.png").unlink()  # 10% fewer: not a lot
    assert drift.dataset_changes(recorded) is None
    make_class(folder / "grey", (128, 128, 128), 3, 2)
    for index in range(4):
        (folder / "dark" / f"{index}.png").unlink()  # 40% fewer: a lot
    line = drift.dataset_changes(recorded)
    assert line.startswith("[WARNING]") and "\n" not in line
    assert "gained class(es) grey" in line and "dark 10 -> 6" in line and "light" not in line
    shutil.rmtree(folder / "light")
    assert "lost class(es) light" in drift.dataset_changes(recorded)
    shutil.rmtree(folder)  # the model travelled without its data: nothing to say
    assert drift.dataset_changes(recorded) is None


def test_a_huge_training_folder_is_not_walked_on_every_call_and_says_so(folder, monkeypatch):
    """A model trained on /usr walked 140,000 files (7 s) on each classify.py call
    (review 23, item 23): the quick check stops at a count or a time, in one line."""
    recorded = drift.fingerprint(str(folder), ["dark", "light"], [0] * 10 + [1] * 10,
                                 [f"{i:064x}" for i in range(20)])
    monkeypatch.setattr(drift, "MAX_LISTED_FILES", 12)
    line = drift.dataset_changes(recorded)
    assert line == (f"[INFO] did not check the training folder {folder} for changes since "
                    "training (over 12 files; a quick check stops there)")
    monkeypatch.setattr(drift, "MAX_LISTED_FILES", 1000)
    monkeypatch.setattr(drift, "MAX_LISTING_SECONDS", 0)
    assert "(listing took over 0 s;" in drift.dataset_changes(recorded)
    monkeypatch.setattr(drift, "MAX_LISTING_SECONDS", 1.0)
    assert drift.dataset_changes(recorded) is None  # within both: checked, unchanged


def fake_head(mix):
    return confidence.Head(np.eye(2), np.zeros(2), 1.0, None, 10.0, 0.05,
                           {"mean_score": 5.0, "prediction_mix": mix})


def test_compare_folder_advises_retraining_only_when_the_new_images_are_far_or_mixed_otherwise():
    head = fake_head([0.5, 0.5])
    rng = np.random.default_rng(0)
    alike = np.eye(2)[rng.integers(0, 2, 200)]  # both classes, half each
    verdict = drift.compare_folder(head, alike, rng.normal(5.0, 1.0, 200),
                                   rng.random(200) < 0.05)
    assert verdict["retrain"] is False and verdict["reasons"] == []
    far = drift.compare_folder(head, alike, rng.normal(12.0, 1.0, 200), rng.random(200) < 0.6)
    assert far["retrain"] and len(far["reasons"]) == 2 and far["mean_score_ratio"] > 2
    one_sided = drift.compare_folder(head, np.eye(2)[np.zeros(200, int)],
                                     rng.normal(5.0, 1.0, 200), np.zeros(200, bool))
    assert one_sided["retrain"] and one_sided["mix_distance"] == pytest.approx(0.5)


def test_a_classifier_warns_once_when_its_training_folder_gained_a_class(folder):
    pytest.importorskip("tensorflow")
    from pyimagesearch import training
    from pyimagesearch.inference import Classifier

    settings = training_settings(folder.parent, epochs=1)
    training.train(settings, log=lambda line: None)
    quiet = []
    Classifier(settings["model"], settings["labelbin"], log=quiet.append)
    assert quiet == []
    make_class(folder / "grey", (128, 128, 128), 4, 2)
    lines = []
    classifier = Classifier(settings["model"], settings["labelbin"], log=lines.append)
    assert classifier.backend == "litert"
    assert [line for line in lines if "changed since this model was trained" in line] == [
        f"[WARNING] the training folder {folder} changed since this model was trained: "
        "gained class(es) grey. Retrain (train.py) for the model to know it"]


def test_evaluate_py_drift_tells_new_noise_from_more_of_the_same(folder, tmp_path):
    pytest.importorskip("tensorflow")
    import os
    import subprocess
    import sys

    from conftest import REPO_ROOT
    from pyimagesearch import training

    make_class(folder / "dark", (40, 40, 40), 40, 0)  # 80 images: 20 validate, enough for
    make_class(folder / "light", (215, 215, 215), 40, 1)  # an unknown threshold
    settings = training_settings(folder.parent, epochs=2)
    training.train(settings, log=lambda line: None)
    same = tmp_path / "more of the same"
    make_class(same / "a", (40, 40, 40), 6, 7)
    make_class(same / "b", (215, 215, 215), 6, 8)
    noise = tmp_path / "new photos"
    noise.mkdir()
    rng = np.random.default_rng(9)
    for index in range(8):
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(
            noise / f"{index}.png")
    (noise / "notes.txt").write_text("not an image")

    def drift_check(path):
        return subprocess.run([sys.executable, os.path.join(REPO_ROOT, "evaluate.py"), "-m",
                               settings["model"], "-l", settings["labelbin"], "--drift",
                               str(path)], capture_output=True, text=True, timeout=120)

    far = drift_check(noise)
    assert far.returncode == 0, far.stderr
    assert "8 images in" in far.stdout and "100.0% unknown" in far.stdout
    assert "retraining is advised" in far.stdout and "notes.txt" in far.stdout + far.stderr
    near = drift_check(same)
    assert near.returncode == 0, near.stderr
    assert "12 images in" in near.stdout and "no need to retrain" in near.stdout
    wrong = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "evaluate.py"), "-m",
                            settings["model"], "-l", settings["labelbin"], "--drift", str(noise),
                            "--split", "val"], capture_output=True, text=True, timeout=120)
    assert wrong.returncode == 2 and len(wrong.stderr.strip().splitlines()) == 1
