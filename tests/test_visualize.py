"""visualize.py and Grad-CAM: the heat map points at the evidence, the script draws and refuses well."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("tensorflow")

from conftest import REPO_ROOT  # noqa: E402

SIZE = 32
CLASSES = ["cross", "none", "square"]  # LabelBinarizer order (sorted)


def corner_image(kind, rng):
    """(SIZE, SIZE, 3) uint8: noise, the class's shape in the top-left quadrant, a circle elsewhere.

    Only the shape in the top-left corner decides the class; the bright circle
    in another quadrant is there in every class, so a heat map that just
    follows bright blobs would fail the test. "none" (no shape) is a class of
    its own, so "cross" has to be seen rather than inferred from "no square".
    """
    pixels = rng.integers(0, 70, (SIZE, SIZE, 3)).astype(np.uint8)
    top, left = rng.integers(2, SIZE // 2 - 10, 2)
    shape = np.zeros((9, 9), dtype=bool)
    if kind == "square":
        shape[:, :] = True
    elif kind == "cross":
        shape[np.arange(9), np.arange(9)] = shape[np.arange(9), 8 - np.arange(9)] = True
        shape[np.arange(1, 9), np.arange(8)] = shape[np.arange(1, 9), 8 - np.arange(1, 9)] = True
    pixels[top:top + 9, left:left + 9][shape] = (240, 220, 40)
    quadrant = rng.integers(1, 4)  # 1: top right, 2: bottom left, 3: bottom right
    center = np.array([quadrant // 2, quadrant % 2]) * (SIZE // 2) + rng.integers(6, 10, 2)
    rows, columns = np.mgrid[:SIZE, :SIZE]
    pixels[(rows - center[0]) ** 2 + (columns - center[1]) ** 2 <= 16] = (240, 220, 40)
    return pixels


def corner_set(count, seed):
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % len(CLASSES)
    return np.stack([corner_image(CLASSES[label], rng) for label in labels]), labels


@pytest.fixture(scope="module")
def corner_model(tmp_path_factory):
    """A small conv net that learned the corner shapes, saved as train.py saves (RGB, 0-255)."""
    import keras
    from keras import layers
    from sklearn.preprocessing import LabelBinarizer

    from pyimagesearch import persistence

    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((SIZE, SIZE, 3)), layers.Rescaling(1 / 255),
        layers.Conv2D(16, 3, padding="same"), layers.Activation("relu"), layers.MaxPooling2D(),
        layers.Conv2D(32, 3, padding="same"), layers.Activation("relu"), layers.MaxPooling2D(),
        layers.Conv2D(32, 3, padding="same"), layers.Activation("relu"),  # (8, 8, 32)
        layers.GlobalAveragePooling2D(), layers.Dense(len(CLASSES), activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    images, labels = corner_set(480, seed=1)
    model.fit(images.astype(np.float32), labels, epochs=12, batch_size=32, verbose=0)
    folder = tmp_path_factory.mktemp("corner model")
    model_path, labels_path = folder / "corner.model", folder / "lb.pickle"
    persistence.save_model(model, model_path, {"class_names": CLASSES, "channel_order": "RGB",
                                               "input_scale": 1.0, "image_size": SIZE})
    persistence.save_label_binarizer(LabelBinarizer().fit(CLASSES), labels_path)
    return model_path, labels_path


def test_grad_cam_mass_falls_on_the_deciding_corner(corner_model):
    from pyimagesearch import visualize
    from pyimagesearch.inference import Classifier

    classifier = Classifier(*corner_model, backend="keras")
    images, labels = corner_set(60, seed=7)  # images the model never saw
    probabilities = classifier.predict_arrays(images)
    assert np.mean(probabilities.argmax(axis=1) == labels) >= 0.9  # it learned the task
    shares, peaks = [], []
    for image, label in zip(images, labels):
        if CLASSES[label] == "none":
            continue  # its evidence is an absence: nowhere in particular
        heat, probs, index = visualize.grad_cam(classifier.model,
                                                classifier.model_inputs(image[None]), int(label))
        assert index == label and heat.shape == (8, 8) and heat.max() <= 1.0
        heat = visualize.upsample(heat, SIZE)
        shares.append(heat[:SIZE // 2, :SIZE // 2].sum() / max(heat.sum(), 1e-9))
        peak_row, peak_column = np.unravel_index(heat.argmax(), heat.shape)
        peaks.append(peak_row < SIZE // 2 and peak_column < SIZE // 2)
    # A uniform map puts 25% in that quadrant; the circle elsewhere is as bright as the shape.
    assert np.median(shares) > 0.45 and np.mean(peaks) >= 0.9, np.round(shares, 2)


def test_feature_maps_and_filters_per_block(corner_model):
    from pyimagesearch import visualize
    from pyimagesearch.inference import Classifier

    classifier = Classifier(*corner_model, backend="keras")
    blocks = visualize.feature_maps(classifier.model, np.zeros((1, SIZE, SIZE, 3), np.float32))
    assert [(name, maps.shape) for name, maps in blocks] == [
        ("block 1", (32, 32, 16)), ("block 2", (16, 16, 32)), ("block 3", (8, 8, 32))]
    assert all(maps.min() >= 0 for _, maps in blocks)  # after the ReLU, as the next block sees it
    assert visualize.first_filters(classifier.model).shape == (3, 3, 3, 16)


def run_visualize(*args, cwd):
    return subprocess.run([sys.executable, os.path.join(REPO_ROOT, "visualize.py"),
                           *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=REPO_ROOT))


def test_visualize_py_one_image_and_a_folder(corner_model, tmp_path):
    model_path, labels_path = corner_model
    images = tmp_path / "my images"
    images.mkdir()
    for index, (image, label) in enumerate(zip(*corner_set(3, seed=11))):
        Image.fromarray(image).save(images / f"{CLASSES[label]}-{index}.png")
    (images / "notes.txt").write_text("not an image")
    # A name that is not UTF-8 (review 23, item 15): matplotlib cannot draw it as it is.
    Image.fromarray(corner_set(1, seed=12)[0][0]).save(os.fsdecode(bytes(images) + b"/odd\xff.png"))
    one = run_visualize("-m", model_path, "-l", labels_path, "-i", images / "square-2.png",
                        "-o", tmp_path / "out one", cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    assert sorted(os.listdir(tmp_path / "out one")) == [
        "filters.png", "square-2.block-1.png", "square-2.block-2.png", "square-2.block-3.png",
        "square-2.gradcam.png"]
    sheet = run_visualize("-m", model_path, "-l", labels_path, "-i", images, "--class", "cross",
                          "-o", tmp_path / "out sheet", cwd=tmp_path)
    assert sheet.returncode == 0, sheet.stderr
    assert sorted(os.listdir(tmp_path / "out sheet")) == ["filters.png", "gradcam-sheet.png"]
    assert "skipped" in sheet.stdout and "notes.txt" in sheet.stdout
    with Image.open(tmp_path / "out sheet" / "gradcam-sheet.png") as picture:
        assert picture.size[0] > 400


@pytest.mark.parametrize("case", ["missing model", "unknown class", "output is a file",
                                  "no images", "a LiteRT file", "an ONNX file"])
def test_visualize_py_bad_arguments_one_line_exit_2(corner_model, tmp_path, case):
    model_path, labels_path = corner_model
    image = tmp_path / "a.png"
    Image.fromarray(corner_set(1, seed=3)[0][0]).save(image)
    (tmp_path / "taken").write_text("a file")
    exported = {"a LiteRT file": tmp_path / "my model.tflite",
                "an ONNX file": tmp_path / "my model.onnx"}.get(case)
    if exported is not None:  # its first bytes are what tells the kind (no Keras layers inside)
        exported.write_bytes(b"\x1c\0\0\0TFL3" + bytes(24) if case == "a LiteRT file"
                             else b"\x08\x07\x12\x07tf2onnx")
    args = {"missing model": ["-m", tmp_path / "nope.model", "-l", labels_path, "-i", image],
            "unknown class": ["-m", model_path, "-l", labels_path, "-i", image, "--class", "x"],
            "output is a file": ["-m", model_path, "-l", labels_path, "-i", image,
                                 "-o", tmp_path / "taken"],
            "no images": ["-m", model_path, "-l", labels_path, "-i", tmp_path / "none*.png"]}
    args = args.get(case, ["-m", exported, "-l", labels_path, "-i", image])
    result = run_visualize(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "visualize.py" in result.stderr
    assert "Traceback" not in result.stderr
    if exported is not None:  # it was an AttributeError after loading TensorFlow
        assert f"-m/--model: {exported} is " in result.stderr
        assert "needs the Keras model train.py wrote" in result.stderr


def test_a_network_without_conv_layers_says_so(color_model, tmp_path):
    from pyimagesearch import visualize
    from pyimagesearch.inference import Classifier

    lines = []
    classifier = Classifier(*color_model, backend="keras", log=lines.append)
    image = tmp_path / "red.png"
    Image.new("RGB", (16, 16), (200, 30, 30)).save(image)
    assert visualize.write_pictures(classifier, [str(image)], tmp_path / "out",
                                    log=lines.append) == []
    assert any("no conv layers" in line for line in lines)
