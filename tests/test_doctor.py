"""doctor.py: planted duplicates, a cross-class copy, swapped labels and odd files are found;
quarantine moves files out with a log and --undo puts them back."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import REPO_ROOT, build_color_model
from pyimagesearch import dataset, doctor

COLORS = {"blue": (40, 60, 200), "green": (50, 190, 60), "red": (210, 50, 40)}


def make_folder(root, count=12):
    rng = np.random.default_rng(0)
    for name, color in COLORS.items():
        (root / name).mkdir(parents=True)
        for index in range(count):
            pixels = np.clip(rng.normal(color, 30, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{index}.png")
    shutil.copy(root / "red" / "0.png", root / "red" / "0_copy.png")  # exact duplicate
    shutil.copy(root / "green" / "1.png", root / "blue" / "from_green.png")  # across classes
    for index in (5, 6):  # two red images labelled green
        shutil.move(root / "red" / f"{index}.png", root / "green" / f"red{index}.png")
    Image.new("RGB", (32, 32), (128, 128, 128)).save(root / "blue" / "blank.png")
    noisy_blue = np.clip(rng.normal(COLORS["blue"], 30, (32, 32, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(noisy_blue).save(root / "blue" / "really_a.png.jpg", "PNG")
    Image.new("RGB", (32, 32), (200, 40, 40)).save(root / "red" / "flat red.png")  # one colour
    return root


def findings_by_kind(report):
    found = {}
    for finding in report["findings"]:
        found.setdefault(finding["kind"], []).append(set(finding["files"]))
    return found


@pytest.fixture
def folder(tmp_path):
    root = make_folder(tmp_path / "my data")
    return dataset.load_image_folder(str(root), 16, str(tmp_path / "cache"), log=lambda m: None)


def test_the_doctor_finds_planted_duplicates_and_odd_files(folder):
    found = findings_by_kind(doctor.examine(folder, 16))
    assert {"red/0.png", "red/0_copy.png"} in found["duplicate"]
    assert {"green/1.png", "blue/from_green.png"} in found["duplicate-across-classes"]
    assert found["near-blank"] == [{"blue/blank.png", "red/flat red.png"}]
    # flat images share one perceptual hash whatever their colour: not near duplicates
    assert "near-duplicate-across-classes" not in found
    assert found["wrong-extension"] == [{"blue/really_a.png.jpg"}]
    assert "likely-mislabelled" not in found  # only with a model


def test_with_a_model_the_swapped_labels_rank_first(folder, tmp_path):
    pytest.importorskip("tensorflow")
    from pyimagesearch.inference import Classifier

    # (the colour model has no description: say it takes RGB, as it was built)
    classifier = Classifier(*build_color_model(tmp_path), backend="keras", channel_order="rgb")
    columns = [classifier.class_names.index(name) for name in folder.class_names]
    probabilities = classifier.predict_arrays(folder.images)[:, columns]
    found = findings_by_kind(doctor.examine(folder, 16, probabilities))
    suspects = found["likely-mislabelled"][0]
    planted = {"green/red5.png", "green/red6.png", "blue/from_green.png"}
    assert planted <= suspects and len(suspects) <= len(planted) + 1


def test_confident_learning_ranks_by_margin_over_per_class_thresholds():
    probabilities = np.array([[0.9, 0.1, 0.0], [0.8, 0.2, 0.0], [0.3, 0.7, 0.0],  # labelled 0
                              [0.2, 0.8, 0.0], [0.6, 0.4, 0.0], [0.95, 0.05, 0.0],  # labelled 1
                              [0.1, 0.2, 0.7], [0.3, 0.3, 0.4], [0.1, 0.1, 0.8]])  # labelled 2
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
    # thresholds: class 0 min(mean(0.9, 0.8, 0.3), 0.5) = 0.5; class 1 mean(0.8, 0.4, 0.05)
    # = 0.417; class 2 0.5. Row 4 (0.6 for class 0, labelled 1) also counts as class 0.
    suspects = doctor.likely_mislabelled(probabilities, labels)
    assert [row for row, _, _ in suspects] == [5, 2, 4]  # margins 0.9, 0.4, 0.2
    assert [guess for _, guess, _ in suspects] == [0, 1, 0]


def run(*args, cwd):
    return subprocess.run([sys.executable, os.path.join(REPO_ROOT, "doctor.py"), *map(str, args)],
                          cwd=cwd, capture_output=True, text=True, timeout=120)


def test_quarantine_moves_with_a_log_and_undo_puts_back(tmp_path):
    root = make_folder(tmp_path / "my data")
    quarantine = tmp_path / "out of the way"
    result = run("--dataset", root, "--cache-dir", tmp_path / "cache", "--quarantine",
                 quarantine, "--move", "duplicate", "near-blank", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert not (root / "red" / "0_copy.png").exists() and (root / "red" / "0.png").exists()
    assert not (root / "blue" / "blank.png").exists()
    assert (quarantine / "red" / "0_copy.png").exists()
    log = (quarantine / "quarantine-log.csv").read_text().splitlines()
    assert len(log) == 4 and "0_copy.png" in "".join(log)  # header + copy + 2 near-blank
    report = json.loads((tmp_path / "my data.doctor.json").read_text())
    assert {finding["kind"] for finding in report["findings"]} >= {
        "duplicate", "duplicate-across-classes", "near-blank", "wrong-extension"}
    page = (tmp_path / "my data.doctor.html").read_text()
    assert "duplicate-across-classes" in page and "data:image/png;base64," in page
    result = run("--undo", quarantine, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (root / "red" / "0_copy.png").exists() and (root / "blue" / "blank.png").exists()


@pytest.mark.parametrize("args,fragment", [
    (["--dataset", "nope"], "folder not found"),
    (["--dataset", "."], "--quarantine DIR and --move"),
    (["--undo", "."], "no quarantine-log.csv"),
])
def test_bad_arguments_are_one_line_and_exit_2(tmp_path, args, fragment):
    if fragment.startswith("--quarantine"):
        args = args + ["--move", "duplicate"]
    result = run(*args, cwd=tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1 and fragment in lines[0], result.stderr
