"""The LiteRT copy of a model gives Keras's probabilities, without importing TensorFlow."""

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO_ROOT

IMAGE_SIZE = 16
NUM_CLASSES = 3


@pytest.fixture(scope="module")
def keras_and_tflite(tmp_path_factory):
    pytest.importorskip("ai_edge_litert")
    import keras

    from pyimagesearch.litert import export_tflite
    from pyimagesearch.smallervggnet import SmallerVGGNet

    keras.utils.set_random_seed(0)
    model = SmallerVGGNet.build(IMAGE_SIZE, IMAGE_SIZE, 3, NUM_CLASSES, rescale=True)
    path = tmp_path_factory.mktemp("litert model") / "tiny.tflite"
    export_tflite(model, str(path))
    return model, path


def tiny_images(count):
    return np.random.default_rng(1).integers(0, 256, (count, IMAGE_SIZE, IMAGE_SIZE, 3),
                                             dtype=np.uint8)


def test_litert_probabilities_match_keras(keras_and_tflite):
    from pyimagesearch.litert import LiteRTClassifier

    model, path = keras_and_tflite
    classifier = LiteRTClassifier(path)
    assert (classifier.image_size, classifier.num_classes) == (IMAGE_SIZE, NUM_CLASSES)
    for count in (1, 4, 1):  # batch size changes resize the interpreter's input
        images = tiny_images(count)
        expected = model.predict_on_batch(images.astype(np.float32))
        probabilities = classifier.predict(images)
        assert probabilities.shape == (count, NUM_CLASSES)
        np.testing.assert_allclose(probabilities, expected, atol=1e-4)
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_export_is_atomic_and_leaves_no_temporary(keras_and_tflite):
    _, path = keras_and_tflite
    assert path.stat().st_size > 0
    assert sorted(os.listdir(path.parent)) == ["tiny.tflite"]


def test_wrong_input_is_a_value_error(keras_and_tflite):
    from pyimagesearch.litert import LiteRTClassifier

    classifier = LiteRTClassifier(keras_and_tflite[1])
    with pytest.raises(ValueError, match="uint8 images of shape"):
        classifier.predict(np.zeros((1, 8, 8, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        classifier.predict(np.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.float32))


def test_runner_does_not_import_tensorflow():
    code = ("import sys, pyimagesearch.litert, pyimagesearch.imageio; "
            "import ai_edge_litert.interpreter; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'; "
            "assert 'keras' not in sys.modules, 'keras was imported'")
    if not _has_litert():
        code = code.replace("import ai_edge_litert.interpreter; ", "")
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True)


def _has_litert():
    try:
        import ai_edge_litert  # noqa: F401
    except ImportError:
        return False
    return True


def test_metadata_round_trip_and_cheap_read(keras_and_tflite, tmp_path):
    from pyimagesearch.litert import LiteRTClassifier, export_tflite, read_metadata

    model, plain = keras_and_tflite
    assert read_metadata(plain) is None  # exported without metadata
    metadata = {"run_id": "5f3c", "class_names": ["a", "b", "c"], "image_size": IMAGE_SIZE,
                "channel_order": "RGB", "input_scale": 1.0, "labelbin_sha256": "00ff"}
    path = tmp_path / "with metadata.tflite"
    export_tflite(model, str(path), metadata=metadata)
    assert read_metadata(path) == metadata
    images = tiny_images(2)  # the metadata changes nothing else
    np.testing.assert_allclose(LiteRTClassifier(path).predict(images),
                               LiteRTClassifier(plain).predict(images), atol=1e-6)
    started = time.perf_counter()
    for _ in range(20):
        read_metadata(path)
    assert (time.perf_counter() - started) / 20 < 0.01  # measured: ~0.06 ms on a 35 MB file


def test_damaged_files_raise_litert_file_error(keras_and_tflite, tmp_path):
    from pyimagesearch.litert import LiteRTFileError, read_metadata

    data = keras_and_tflite[1].read_bytes()
    for name, content in [("empty", b""), ("text", b"hello, this is not a model"),
                          ("head", data[:64])]:
        (tmp_path / name).write_bytes(content)
        with pytest.raises(LiteRTFileError, match=name):
            read_metadata(tmp_path / name)


def test_reading_metadata_does_not_import_tensorflow(keras_and_tflite):
    code = ("import sys; from pyimagesearch.litert import read_metadata; "
            f"read_metadata({str(keras_and_tflite[1])!r}); "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True)
