"""The run page (<model>.report.html): self-contained, and every section holds the run's own numbers."""

import json
import shlex
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("tensorflow")

from conftest import run_main, training_settings  # noqa: E402
from pyimagesearch import persistence, training  # noqa: E402

CLASSES = ("dark", "light", "mid")


class Sections(HTMLParser):
    """Text, image sources and table rows of each <section id=...> (and the header)."""

    def __init__(self, page):
        super().__init__()
        self.text, self.images, self.rows, self.tags = {}, {}, {}, set()
        self.current, self.row = None, None
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.add(tag)
        if tag in ("section", "header"):
            self.current = attrs.get("id")
            self.text[self.current], self.images[self.current] = "", []
            self.rows[self.current] = []
        elif tag == "img" and self.current:
            self.images[self.current].append(attrs["src"])
        elif tag == "tr" and self.current:
            self.row = []
            self.rows[self.current].append(self.row)
        elif tag in ("td", "th") and self.row is not None:
            self.row.append("")

    def handle_endtag(self, tag):
        if tag in ("section", "header"):
            self.current = None
        elif tag == "tr":
            self.row = None

    def handle_data(self, data):
        if self.current:
            self.text[self.current] += data
            if self.row:
                self.row[-1] += data.strip()


def make_dataset(root, count=24):
    """Three grey levels close enough (noise 45) that some images are mistaken for others."""
    rng = np.random.default_rng(0)
    for index, name in enumerate(CLASSES):
        folder = root / name
        folder.mkdir(parents=True)
        level = (60, 190, 125)[index]
        for image in range(count):
            pixels = np.clip(rng.normal(level, 45, (20, 20, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{image}.png")
    (root / "dark" / "notes.txt").write_text("not an image")


def train_and_read(root, **overrides):
    make_dataset(root / "data")
    settings = training_settings(root, epochs=2, **overrides)
    training.train(settings, log=lambda message: None)
    page = (root / "m.model.report.html").read_text(encoding="utf-8")
    description = persistence.read_description(settings["model"])
    return settings, description, page, Sections(page)


@pytest.fixture(scope="module")
def with_test(tmp_path_factory):
    return train_and_read(tmp_path_factory.mktemp("with test"), test_split=0.25)


def assert_self_contained(page, sections):
    assert "<script" not in page and "<link" not in page and "url(" not in page
    assert "http://" not in page and "https://" not in page
    for sources in sections.images.values():
        assert all(source.startswith("data:image/png;base64,") for source in sources)


def test_each_section_holds_the_run_s_own_numbers(with_test):
    settings, description, page, sections = with_test
    with open(settings["model"] + ".metrics.json") as handle:
        metrics = json.load(handle)
    assert_self_contained(page, sections)
    summary = sections.text["summary"]
    assert f"{100 * metrics['accuracy']:.1f}% accuracy on test" in " ".join(summary.split())
    assert f"kept epoch {description['best_epoch']} of 2" in " ".join(summary.split())

    data = sections.rows["data"]
    assert data[0] == ["class", "train", "validation", "test", "total"]
    columns = {name: sum(int(row[index]) for row in data[1:])
               for index, name in enumerate(("train", "validation", "test"), start=1)}
    assert columns == {"train": description["train_images"],
                       "validation": description["val_images"],
                       "test": description["test_images"]}
    assert "dark/notes.txt: not an image file" in sections.text["data"]

    curves = sections.rows["curves"]
    assert len(curves) == 1 + description["epochs_run"] and len(sections.images["curves"]) == 1
    kept = curves[description["best_epoch"]]
    assert kept[0] == f"{description['best_epoch']} (kept)"
    assert kept[3] == f"{description['best_val_loss']:.4f}"
    assert curves[0][5] == "learning rate"

    calibration = " ".join(sections.text["calibration"].split())
    assert f"T = {metrics['calibration']['temperature']:.2f}" in calibration
    assert f"{metrics['calibration']['ece_before']:.3f} as trained" in calibration
    assert f"{metrics['calibration']['ece_after']:.3f} after" in calibration
    assert len(sections.images["calibration"]) == 1

    results = {row[0]: row[1:5] for row in sections.rows["results"][1:]}
    assert set(results) == set(metrics["per_class"])
    for name, numbers in metrics["per_class"].items():
        assert results[name] == [f"{numbers['precision']:.3f}", f"{numbers['recall']:.3f}",
                                 f"{numbers['f1']:.3f}", str(numbers["support"])]
    assert "too small" in sections.text["results"]  # fewer than 20 test images per class

    assert len(sections.images["confusion"]) == 1
    wrong = sum(metrics["confusion_matrix"][i][j] for i in range(3) for j in range(3) if i != j)
    if wrong:
        assert "taken for" in sections.text["confusion"]
    worst = metrics["worst_misclassified"]
    assert len(sections.images["mistakes"]) == 2 * len(worst)  # thumbnail and Grad-CAM each
    for mistake in worst:
        assert f"{mistake['true']} → {mistake['predicted']}" in sections.text["mistakes"]

    usage = dict(row for row in sections.rows["usage"])
    assert float(usage["peak memory (resident)"].split()[0]) > 50  # MiB: TensorFlow is loaded
    assert float(usage["training epochs (all sessions, validation included)"].split()[0]) > 0

    shown = dict(row for row in sections.rows["settings"] if len(row) == 2)
    assert shown["epochs"] == "2" and shown["seed"] == str(settings["seed"])
    assert shown["tensorflow"] == description["versions"]["tensorflow"]

    # The command parses back into the very settings the run used.
    import train

    words = shlex.split(sections.text["command"].strip().splitlines()[-1])
    assert words[:2] == ["python", "train.py"]
    again = vars(train.parse_args(words[2:]))
    assert {key: again[key] for key in description["settings"]} == {
        key: value for key, value in description["settings"].items()}


def test_without_a_test_part_the_page_shows_validation(tmp_path):
    settings, description, page, sections = train_and_read(tmp_path, test_split=0.0)
    assert_self_contained(page, sections)
    summary = " ".join(sections.text["summary"].split())
    assert "accuracy on validation" in summary and "no test part" in summary
    assert f"({description['val_images']} images)" in summary
    assert "Results per class (validation)" in sections.text["results"]
    supports = sum(int(row[4]) for row in sections.rows["results"][1:])
    assert supports == description["val_images"]


def test_evaluate_py_writes_the_same_kind_of_page(with_test, tmp_path, capsys):
    settings, _, _, _ = with_test
    code, out, err = run_main("evaluate", ["-m", settings["model"], "-l", settings["labelbin"],
                                           "-d", settings["dataset"], "--output-prefix",
                                           tmp_path / "eval"], capsys)
    assert code == 0, err
    page = (tmp_path / "eval.report.html").read_text(encoding="utf-8")
    sections = Sections(page)
    assert_self_contained(page, sections)
    metrics = json.loads((tmp_path / "eval.metrics.json").read_text())
    summary = " ".join(sections.text["summary"].split())
    assert f"{100 * metrics['accuracy']:.1f}% accuracy on evaluation ({metrics['num_images']}" \
        in summary
    assert "curves" not in sections.text or not sections.rows.get("curves")
    assert [row[-1] for row in sections.rows["data"][1:]] == ["24", "24", "24"]
    assert "evaluate.py" in sections.text["command"] and "--output-prefix" in sections.text["command"]
