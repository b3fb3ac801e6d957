"""Reports stay readable with many classes (the 649-class Pokedex): no C x C picture, the
largest confusions listed instead, and a per-class table limited to the worst classes.

A fake 60-class evaluation, no training: fast.
"""

import numpy as np
import pytest
from PIL import Image

from pyimagesearch import evaluation, report

NUM_CLASSES = 60


@pytest.fixture(scope="module")
def evaluated():
    """(probabilities, labels, names): 5 images per class, class 7 always taken for 8,
    class 20 twice for 21, everything else right."""
    names = [f"{dex:04d}" for dex in range(1, NUM_CLASSES + 1)]
    labels = np.repeat(np.arange(NUM_CLASSES), 5)  # (300,)
    predicted = labels.copy()
    predicted[labels == 7] = 8
    predicted[np.flatnonzero(labels == 20)[:2]] = 21
    probabilities = np.full((len(labels), NUM_CLASSES), 0.1 / (NUM_CLASSES - 1))
    probabilities[np.arange(len(labels)), predicted] = 0.9  # (300, 60), rows sum to 1
    return probabilities, labels, names


def test_top_confusions_are_the_largest_off_diagonal_cells(evaluated):
    probabilities, labels, names = evaluated
    metrics, _ = evaluation.compute_metrics(probabilities, labels, names)
    confusions = evaluation.top_confusions(np.asarray(metrics["confusion_matrix"]), names)
    assert confusions == [
        {"true": "0008", "predicted": "0009", "count": 5, "share": 1.0},
        {"true": "0021", "predicted": "0022", "count": 2, "share": 0.4}]
    assert report.top_confusions is evaluation.top_confusions  # one implementation


def test_report_text_lists_confusions_above_the_matrix_limit(evaluated):
    probabilities, labels, names = evaluated
    _, text = evaluation.compute_metrics(probabilities, labels, names)
    assert "largest confusions" in text
    assert "0008 -> 0009: 5 (100%)" in text and "0021 -> 0022: 2 (40%)" in text
    _, few = evaluation.compute_metrics(probabilities[:50, :10] / probabilities[:50, :10].sum(
        axis=1, keepdims=True), labels[:50], names[:10])
    assert "largest confusions" not in few  # a small report keeps its matrix


def test_confusion_picture_is_a_short_chart_not_a_60x60_matrix(evaluated, tmp_path):
    probabilities, labels, names = evaluated
    metrics = evaluation.write_report(probabilities, labels, names, tmp_path / "m",
                                      log=lambda *_: None)
    with Image.open(metrics["files"]["confusion.png"]) as picture:
        width, height = picture.size
    # 2 confusions -> a small chart; a 60-class matrix would be 22 x 22 inches (2200 px).
    assert width <= 1000 and height <= 500


def test_run_page_lists_worst_classes_with_a_note(evaluated):
    probabilities, labels, names = evaluated
    metrics = evaluation.compute_metrics(probabilities, labels, names)[0]
    context = report.results_context(metrics, "test")
    assert len(context["per_class"]) == report.MAX_CLASS_ROWS
    assert [row["name"] for row in context["per_class"][:2]] == ["0008", "0009"]  # lowest F1
    assert context["classes_listed"] == {"shown": report.MAX_CLASS_ROWS, "of": NUM_CLASSES}
    page = report.evaluation_page(
        "m.model", "data", {"parts": ["test"], "rows": [
            {"name": name, "test": 5, "total": 5} for name in names]},
        [], context, {"seconds": 1.0, "peak_memory_mib": 100.0}, "python evaluate.py", {})
    assert 'id="classes-listed"' in page and "the table shows the" in page
    assert "Largest confusions" in page and "0008 taken for 0009" in page
    assert 'class="scroll tall"' in page  # the 60-row data table scrolls


def test_training_logs_one_short_line_of_counts_for_many_classes(tmp_path):
    from conftest import make_image, training_settings
    from pyimagesearch import training

    for index in range(25):
        for copy in range(1 + (index == 3)):  # class 03 has two images, the others one
            make_image(tmp_path / "data" / f"{index:02d}" / f"{copy}.png",
                       color=(index * 9, 255 - index * 9, copy * 100))
    lines = []
    training.load_data(training_settings(tmp_path), lines.append)
    counts = [line for line in lines if "classes," in line]
    assert counts == ["[INFO] 25 classes, 1 to 2 images each (median 1); the smallest: "
                      "00: 1, 01: 1, 02: 1"]
