"""Training in-process on tiny images: two classes learn, augmenters run, saves are atomic."""

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("tensorflow")

from conftest import training_settings  # noqa: E402
from pyimagesearch import pipeline, training  # noqa: E402
from pyimagesearch.imageio import load_image  # noqa: E402
from pyimagesearch.inference import Classifier  # noqa: E402


def make_class(folder, color, count, seed):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for index in range(count):
        pixels = np.clip(rng.normal(color, 20, (24, 24, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{index}.png")


def settings_for(root, **overrides):
    return training_settings(root, **{"epochs": 6, "seed": 1, **overrides})


@pytest.fixture
def two_classes(tmp_path):
    make_class(tmp_path / "data" / "dark", (40, 40, 40), 24, 0)
    make_class(tmp_path / "data" / "light", (215, 215, 215), 24, 1)
    return tmp_path


def test_two_classes_learn_and_classify(two_classes):
    # LabelBinarizer gives ONE column for two classes; training must still use two.
    settings = settings_for(two_classes)
    history = training.train(settings, log=lambda message: None)
    assert history["loss"][-1] < history["loss"][0]
    assert max(history["accuracy"]) >= 0.9
    keras_classifier = Classifier(settings["model"], settings["labelbin"], backend="keras")
    assert keras_classifier.class_names == ["dark", "light"]
    assert keras_classifier.model.output_shape == (None, 2)
    images = [two_classes / "data" / name / "0.png" for name in ("dark", "light")]
    probabilities = keras_classifier.predict(images)
    assert probabilities.shape == (2, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    # train.py's LiteRT copy is used by default and agrees with Keras.
    fast = Classifier(settings["model"], settings["labelbin"])
    assert fast.backend == "litert" and fast.class_names == ["dark", "light"]
    np.testing.assert_allclose(fast.predict(images), probabilities, atol=1e-4)


def test_the_confidence_head_is_stored_and_both_backends_answer_unknown_alike(tmp_path):
    import json

    # 20 validation images: the fewest the head sets an unknown threshold with.
    make_class(tmp_path / "data" / "dark", (40, 40, 40), 40, 0)
    make_class(tmp_path / "data" / "light", (215, 215, 215), 40, 1)
    two_classes = tmp_path
    settings = settings_for(two_classes, test_split=0.25, val_split=0.25)
    training.train(settings, log=lambda message: None)
    keras_classifier = Classifier(settings["model"], settings["labelbin"], backend="keras")
    fast = Classifier(settings["model"], settings["labelbin"])
    assert keras_classifier.head is not None and fast.head is not None and fast.backend == "litert"
    assert fast.head.answers_unknown
    size = fast.image_size
    known = np.stack([load_image(two_classes / "data" / name / f"{i}.png", size)
                      for name in ("dark", "light") for i in range(8)])
    rng = np.random.default_rng(5)
    strange = np.stack([np.full((size, size, 3), color, np.uint8) for color in
                        ((255, 0, 0), (0, 255, 0), (0, 0, 255))] +
                       [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(3)])
    images = np.concatenate([known, strange])
    keras_answer, fast_answer = keras_classifier.answer_arrays(images), fast.answer_arrays(images)
    np.testing.assert_allclose(fast_answer[0], keras_answer[0], atol=1e-4)
    assert np.array_equal(fast_answer[1], keras_answer[1])
    assert keras_answer[1][:16].mean() <= 0.25  # training images: mostly known
    assert keras_answer[1][16:].all()  # saturated colours and noise: never seen, unknown
    # The figures are recorded: description, metrics.json, and the run page's section.
    with open(settings["model"] + ".metrics.json") as handle:
        metrics = json.load(handle)
    calibration = metrics["calibration"]
    assert calibration["part"] == "test" and calibration["temperature"] > 0
    assert 0 <= calibration["ece_after"] <= 1 and len(calibration["bins_after"]) == 15
    assert sum(row["count"] for row in calibration["bins_after"]) == metrics["num_images"]
    with open(settings["model"] + ".report.html") as handle:
        page = handle.read()
    assert 'id="calibration"' in page and "reliability diagram" in page


def test_failed_save_leaves_previous_outputs_intact(two_classes, monkeypatch):
    settings = settings_for(two_classes, epochs=1)
    for key in ("model", "labelbin", "plot"):
        (two_classes / settings[key].split("/")[-1]).write_bytes(b"previous " + key.encode())

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(training, "export_tflite", disk_full)  # mid-save: model already written
    with pytest.raises(OSError):
        training.train(settings, log=lambda message: None)
    assert (two_classes / "m.model").read_bytes() == b"previous model"
    assert (two_classes / "lb.pickle").read_bytes() == b"previous labelbin"
    assert (two_classes / "plot.png").read_bytes() == b"previous plot"
    assert not [p for p in two_classes.iterdir() if ".tmp" in p.name]


@pytest.mark.parametrize("augmenter", ["layers", "imagedatagenerator"])
def test_augmenters_change_training_batches_only(augmenter):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (10, 16, 16, 3), dtype=np.uint8)
    labels = np.arange(10) % 2
    indices = np.arange(10)
    train = pipeline.make_dataset(images, labels, indices, 2, 10, True, 3, augmenter)
    val = pipeline.make_dataset(images, labels, indices, 2, 10, False, 3, augmenter)
    (train_x, train_y), = train.take(1).as_numpy_iterator()
    (val_x, val_y), = val.take(1).as_numpy_iterator()
    assert train_x.shape == val_x.shape == (10, 16, 16, 3)
    assert train_y.shape == (10, 2)
    np.testing.assert_array_equal(val_x, images.astype(np.float32))  # validation untouched
    assert not np.array_equal(np.sort(train_x.ravel()), np.sort(images.ravel().astype(np.float32)))


def test_every_epoch_sees_every_training_image():
    # Guards against Keras 3 cutting alternate epochs to one batch.
    images = np.zeros((37, 12, 12, 3), dtype=np.uint8)
    labels = np.arange(37) % 3
    dataset = pipeline.make_dataset(images, labels, np.arange(37), 3, 8, True, 0, "none")
    for _ in range(2):
        assert sum(len(y) for _, y in dataset.as_numpy_iterator()) == 37
