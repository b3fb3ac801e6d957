"""The evaluation report (hand-checked numbers) and evaluate.py on tiny generated datasets."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from conftest import (BLUE, GREEN, RED, build_color_model, make_image, run_main,
                      run_without_tensorflow)
from described import describe_as_trained
from pyimagesearch.evaluation import MIN_TRUSTED_SUPPORT, write_report

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def color_model(tmp_path_factory):
    """conftest's colour model, described inside as train.py describes its models."""
    model, labels = build_color_model(tmp_path_factory.mktemp("model"))
    describe_as_trained(model, labels)
    return model, labels


def quiet(*_):
    pass


def test_report_matches_hand_computed_numbers(tmp_path):
    # Truth a, b, b, c; predicted a, a, b, c: a has precision 1/2, b recall 1/2.
    probabilities = np.array([[0.9, 0.05, 0.05], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1],
                              [0.1, 0.1, 0.8]])
    printed = []
    metrics = write_report(probabilities, [0, 1, 1, 2], ["a", "b", "c"], tmp_path / "m",
                           top_k=2, log=printed.append)
    assert metrics["accuracy"] == 0.75 and metrics["top_k"] == 2
    assert metrics["top_k_accuracy"] == 1.0  # b's miss has b second
    assert metrics["per_class"]["a"] == {"precision": 0.5, "recall": 1.0, "f1": 2 / 3,
                                         "support": 1, "too_small_to_trust": True}
    assert metrics["per_class"]["b"]["precision"] == 1.0
    assert metrics["per_class"]["b"]["recall"] == 0.5
    assert metrics["confusion_matrix"] == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    assert metrics["worst_misclassified"] == [{"index": 1, "path": None, "true": "b",
                                               "predicted": "a", "probability": 0.6}]
    saved = json.loads((tmp_path / "m.metrics.json").read_text())
    assert saved["num_images"] == 4 and saved["per_class"] == metrics["per_class"]
    report = (tmp_path / "m.report.txt").read_text()
    assert "precision    recall  f1-score   support" in report  # scikit-learn's table
    assert report.count("<- too small to trust") == 3
    assert "accuracy: 75.00%" in report and "top-2 accuracy: 100.00%" in report
    assert printed[0] == report.rstrip("\n")
    for kind in ("confusion", "worst"):
        assert (tmp_path / f"m.{kind}.png").read_bytes()[:8] == PNG
    assert set(metrics["files"]) == {"report.txt", "metrics.json", "confusion.png", "worst.png"}


def test_large_classes_are_trusted_and_absent_classes_left_out(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 2], [MIN_TRUSTED_SUPPORT, 5])  # class 1 ("b") has no images
    probabilities = rng.dirichlet(np.ones(3), len(labels))
    probabilities[np.arange(len(labels)), labels] += 2  # every answer right
    metrics = write_report(probabilities, labels, ["a", "b", "c"], str(tmp_path / "out") + os.sep,
                           log=quiet)
    assert set(metrics["per_class"]) == {"a", "c"}
    assert not metrics["per_class"]["a"]["too_small_to_trust"]
    assert metrics["per_class"]["c"]["too_small_to_trust"]
    report = (tmp_path / "out" / "report.txt").read_text()  # a folder prefix
    assert "classes without images here: b" in report
    assert "too small to trust (< 20 images): c" in report
    assert metrics["worst_misclassified"] == []
    assert (tmp_path / "out" / "worst.png").read_bytes()[:8] == PNG  # "no mistakes" sheet


def test_top_k_is_clamped_to_the_number_of_classes(tmp_path):
    metrics = write_report([[0.4, 0.6], [0.7, 0.3]], [0, 0], ["cat", "dog"], tmp_path / "m",
                           top_k=3, log=quiet)
    assert metrics["top_k"] == 2 and metrics["top_k_accuracy"] == 1.0
    assert metrics["accuracy"] == 0.5


def test_worst_sheet_shows_the_most_confident_mistakes_first(tmp_path):
    paths = [make_image(tmp_path / f"{index}.png", color=color)
             for index, color in enumerate((RED, GREEN, BLUE, RED))]
    probabilities = [[0.1, 0.9], [0.8, 0.2], [0.45, 0.55], [0.3, 0.7]]
    metrics = write_report(probabilities, [0, 1, 0, 0], ["x", "y"], tmp_path / "m",
                           paths=paths, log=quiet)
    worst = metrics["worst_misclassified"]
    assert [mistake["path"] for mistake in worst] == [paths[0], paths[1], paths[3], paths[2]]
    assert image_size(tmp_path / "m.worst.png")[0] > 400  # a sheet of 4 thumbnails


def test_confusion_matrix_image_for_many_classes(tmp_path):
    names = [f"pokemon_{index:02d}" for index in range(40)]
    labels = np.arange(200) % 40
    probabilities = np.eye(40)[(labels + (labels % 7 == 0)) % 40]  # some mistakes
    write_report(probabilities, labels, names, tmp_path / "m", log=quiet)
    width, height = image_size(tmp_path / "m.confusion.png")
    assert 1200 < width < 2600 and 1200 < height < 2600  # ~0.4 inch per class at 100 dpi


@pytest.mark.parametrize("probabilities,labels,message", [
    (np.ones((2, 3)) / 3, [0], "do not fit together"),
    (np.ones((2, 2)) / 2, [0, 1], "do not fit together"),  # 3 names, 2 columns
    (np.ones((1, 3)) / 3, [3], "class indices"),
])
def test_mismatched_inputs_raise_value_error(tmp_path, probabilities, labels, message):
    with pytest.raises(ValueError, match=message):
        write_report(probabilities, labels, ["a", "b", "c"], tmp_path / "m", log=quiet)


@pytest.fixture
def evaluate(color_model, tmp_path, monkeypatch, capsys):
    """Run evaluate.main in tmp_path; return (exit code, stdout, stderr)."""
    monkeypatch.chdir(tmp_path)
    model, labels = color_model
    return lambda *args: run_main(
        "evaluate", ["-m", model, "-l", labels, "--cache-dir", tmp_path / "cache", *args], capsys)


def test_evaluate_a_subset_of_classes_with_an_unreadable_file(evaluate, tmp_path):
    data = tmp_path / "test set"
    for index in range(3):
        make_image(data / "red" / f"r{index}.png", color=RED)
        make_image(data / "green" / f"g{index}.jpg", color=GREEN, format="JPEG")
    make_image(data / "green" / "looks blue.png", color=BLUE)  # one mistake
    (data / "red" / "notes.txt").write_text("not an image")
    code, out, err = evaluate("-d", data, "--output-prefix", tmp_path / "results" / "run1")
    assert code == 0, err
    assert "[WARNING] skipped red/notes.txt: not an image file" in out
    metrics = json.loads((tmp_path / "results" / "run1.metrics.json").read_text())
    assert metrics["num_images"] == 7 and metrics["class_names"] == ["blue", "green", "red"]
    assert set(metrics["per_class"]) == {"green", "red"}  # the model's "blue" has no images
    assert metrics["per_class"]["green"]["recall"] == 0.75
    assert metrics["worst_misclassified"][0]["path"].endswith("looks blue.png")
    assert metrics["skipped_files"] == ["red/notes.txt: not an image file"]
    assert "classes without images here: blue" in out
    for kind in ("report.txt", "confusion.png", "worst.png"):
        assert (tmp_path / "results" / f"run1.{kind}").exists()


def test_evaluate_default_prefix_sits_beside_the_model(evaluate, color_model, tmp_path):
    make_image(tmp_path / "holdout" / "red" / "a.png", color=RED)
    code, _, err = evaluate("-d", tmp_path / "holdout", "--top-k", "1")
    assert code == 0, err
    model, _ = color_model
    assert os.path.exists(f"{model}.eval-holdout.metrics.json")


@pytest.mark.parametrize("make,args,fragment", [
    ("eevee", [], "has classes the model was not trained on: eevee (the model knows: blue, "
                  "green, red)"),
    (None, ["-d", "missing"], "-d/--dataset: folder not found: missing"),
    ("empty", [], "no class folders in data"),
    ("unreadable", [], "no readable images in data"),
])
def test_evaluate_usage_errors(evaluate, tmp_path, make, args, fragment):
    if make == "eevee":
        make_image(tmp_path / "data" / "red" / "a.png", color=RED)
        make_image(tmp_path / "data" / "eevee" / "a.png", color=RED)
    elif make == "empty":
        (tmp_path / "data").mkdir()
    elif make == "unreadable":
        (tmp_path / "data" / "red").mkdir(parents=True)
        (tmp_path / "data" / "red" / "a.png").write_bytes(b"")
    code, _, err = evaluate(*(args or ["-d", "data"]))
    errors = [line for line in err.splitlines() if "error:" in line]
    assert code == 2 and len(errors) == 1 and fragment in errors[0], err


def test_evaluate_end_to_end_checks_classes_before_tensorflow(color_model, tmp_path):
    model, labels = color_model
    make_image(tmp_path / "my data" / "eevee" / "a.png", color=RED)
    stderr = run_without_tensorflow("evaluate", ["-m", model, "-l", labels, "-d", "my data"],
                                    tmp_path)
    assert "evaluate.py: error: my data has classes the model was not trained on" in stderr


def test_class_names_like_report_keys_do_not_collide(tmp_path):
    # Truth accuracy, macro avg, macro avg, weighted avg; one macro avg is called accuracy.
    names = ["accuracy", "macro avg", "weighted avg"]
    probabilities = [[0.9, 0.1, 0], [0.2, 0.8, 0], [0.6, 0.4, 0], [0, 0, 1]]
    metrics = write_report(probabilities, [0, 1, 1, 2], names, tmp_path / "m", log=quiet)
    assert metrics["per_class"]["accuracy"]["precision"] == 0.5
    assert metrics["per_class"]["accuracy"]["recall"] == 1.0
    assert metrics["per_class"]["macro avg"]["recall"] == 0.5
    assert metrics["per_class"]["macro avg"]["support"] == 2
    assert metrics["per_class"]["weighted avg"]["f1"] == 1.0
    assert metrics["accuracy"] == 0.75 and metrics["macro_avg"]["support"] == 4
    assert metrics["macro_avg"]["recall"] == pytest.approx((1 + 0.5 + 1) / 3)
    report = (tmp_path / "m.report.txt").read_text()
    assert report.count("macro avg") == 3  # the class row, the average row, the small list


def test_output_files_override_the_prefix(tmp_path):
    chosen = {kind: tmp_path / "tmp" / f".new-{kind}" for kind in
              ("report.txt", "metrics.json", "confusion.png", "worst.png")}
    metrics = write_report([[0.9, 0.1], [0.3, 0.7]], [0, 1], ["a", "b"], tmp_path / "m",
                           log=quiet, output_files=chosen)
    assert metrics["files"] == {kind: str(path) for kind, path in chosen.items()}
    assert all(path.exists() for path in chosen.values())
    assert not list(tmp_path.glob("m.*"))
    with pytest.raises(ValueError, match="unknown kinds"):
        write_report([[1.0]], [0], ["a"], tmp_path / "m", log=quiet,
                     output_files={"report.html": tmp_path / "x"})


def image_size(path):
    with Image.open(path) as image:  # closed: the suite runs with ResourceWarning as an error
        return image.size


def test_unwritable_output_prefix_is_refused_before_tensorflow(color_model, tmp_path):
    """A prefix inside a regular file: refused even as root, before anything is loaded."""
    model, labels = color_model
    make_image(tmp_path / "data" / "red" / "a.png", color=RED)
    (tmp_path / "results").write_text("a file, not a folder")
    stderr = run_without_tensorflow("evaluate", ["-m", model, "-l", labels, "-d", "data",
                                                 "--output-prefix", "results/run1"], tmp_path)
    assert len(stderr.splitlines()) == 1
    assert ("error: argument --output-prefix: cannot write results/run1.report.txt: "
            f"{tmp_path / 'results'} is a file, not a folder") in stderr


def test_folder_without_write_permission_is_refused(evaluate, tmp_path, monkeypatch):
    make_image(tmp_path / "data" / "red" / "a.png", color=RED)
    (tmp_path / "locked").mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: (
        False if os.fspath(path) == str(tmp_path / "locked") else real_access(path, mode)))
    code, _, err = evaluate("-d", "data", "--output-prefix", tmp_path / "locked" / "new" / "")
    assert code == 2 and len(err.splitlines()) == 1, err
    assert f"no permission to write in {tmp_path / 'locked'}" in err
