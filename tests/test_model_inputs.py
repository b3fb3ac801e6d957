"""Each model is fed the pixels it was trained on: channel order and scale.

The tutorial trained on cv2.imread's BGR pixels divided by 255 outside the
model; this project's models take RGB 0-255 and record it. A model without
this project's description is fed the tutorial's way, with one line saying so.
"""

import json
import os
import re

import numpy as np
import pytest

from conftest import BLUE, GREEN, RED, build_color_model, make_image, run_main

TUTORIAL_CLASSES = ["blue", "green", "red"]


@pytest.fixture(scope="module")
def tutorial_model(tmp_path_factory):
    """An HDF5 `pokedex.model` + lb.pickle, no sidecars, right only on BGR pixels / 255.

    Mean colour -> tanh(4 x) -> classes: with 0-255 pixels tanh saturates at 1 for
    every channel (all classes tie: "blue"); with RGB the red and blue columns swap.
    """
    import keras
    from sklearn.preprocessing import LabelBinarizer

    from pyimagesearch import persistence

    folder = tmp_path_factory.mktemp("tutorial model")
    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(3, activation="tanh", use_bias=False),
                              keras.layers.Dense(3, activation="softmax", use_bias=False)])
    # BGR input channels are B, G, R: channel i is the evidence for class i (blue, green, red).
    model.layers[-2].set_weights([4.0 * np.eye(3, dtype=np.float32)])
    model.layers[-1].set_weights([10.0 * np.eye(3, dtype=np.float32)])
    model.save(folder / "pokedex.h5")
    os.rename(folder / "pokedex.h5", folder / "pokedex.model")  # the tutorial's name
    persistence.save_label_binarizer(LabelBinarizer().fit(TUTORIAL_CLASSES), folder / "lb.pickle")
    return folder / "pokedex.model", folder / "lb.pickle"


@pytest.fixture
def images(tmp_path):
    return {name: make_image(tmp_path / "in" / f"{name}.png", color=color)
            for name, color in (("red", RED), ("green", GREEN), ("blue", BLUE))}


def answers(model, images, capsys, *flags):
    """(label per image name, stderr) from classify.py --json on the images' folder."""
    code, out, err = run_main("classify", ["-m", model[0], "-l", model[1], "-i",
                                           os.path.dirname(images["red"]), "--json", *flags],
                              capsys)
    assert code == 0, err
    labels = {os.path.basename(r["path"])[:-4]: r["label"] for r in map(json.loads,
                                                                         out.splitlines())}
    return labels, err


def notices(err):
    return [line for line in err.splitlines() if "no pokedex description" in line]


def test_tutorial_model_is_fed_bgr_over_255_with_one_line(tutorial_model, images, capsys,
                                                          monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    labels, err = answers(tutorial_model, images, capsys)
    assert labels == {"red": "red", "green": "green", "blue": "blue"}
    assert len(notices(err)) == 1, err
    assert re.search(r"feeding it BGR pixels times 1/255, the tutorial's way; override with "
                     r"--channel-order rgb\|bgr and --input-scale 1\|1/255", err)


@pytest.mark.parametrize("flags", [["--channel-order", "rgb"], ["--input-scale", "1"]])
def test_flags_override_the_guess(tutorial_model, images, capsys, monkeypatch, tmp_path, flags):
    monkeypatch.chdir(tmp_path)
    labels, _ = answers(tutorial_model, images, capsys, *flags)
    assert labels["red"] != "red"  # fed the wrong way on purpose


def test_both_flags_given_means_no_guess_and_no_line(tutorial_model, images, capsys,
                                                     monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    labels, err = answers(tutorial_model, images, capsys, "--channel-order", "bgr",
                          "--input-scale", "1/255")
    assert labels["red"] == "red" and notices(err) == []


def test_evaluate_feeds_the_tutorial_model_the_same_way(tutorial_model, capsys, tmp_path):
    data = tmp_path / "data"
    for name, color in (("red", RED), ("green", GREEN)):
        make_image(data / name / "a.png", color=color)
    common = ["-m", tutorial_model[0], "-l", tutorial_model[1], "-d", data,
              "--cache-dir", tmp_path / "cache", "--output-prefix", tmp_path / "out" / ""]
    code, out, err = run_main("evaluate", common, capsys)
    assert code == 0 and "accuracy: 100.00%" in out and len(notices(err)) == 1, err
    code, out, _ = run_main("evaluate", [*common, "--channel-order", "rgb"], capsys)
    assert code == 0 and "accuracy: 50.00%" in out  # red is taken for blue


@pytest.mark.parametrize("sidecar", ["settings", "labels"])
def test_models_of_an_older_train_py_are_fed_rgb(tmp_path, images, capsys, monkeypatch,
                                                  sidecar):
    """No description inside, but the sidecars an older train.py wrote beside the model."""
    model, labels = build_color_model(tmp_path / "older")
    content = ({"class_names": TUTORIAL_CLASSES, "image_size": 16, "channels": "RGB"}
               if sidecar == "settings" else TUTORIAL_CLASSES)
    (tmp_path / "older" / f"tiny.model.{sidecar}.json").write_text(json.dumps(content))
    monkeypatch.chdir(tmp_path)
    result, err = answers((model, labels), images, capsys)
    assert result == {"red": "red", "green": "green", "blue": "blue"} and notices(err) == []


def test_recorded_channel_order_is_obeyed(tmp_path, images, capsys, monkeypatch):
    """A description saying BGR is obeyed (the colour model then mistakes red for blue)."""
    from pyimagesearch import persistence

    model, labels = build_color_model(tmp_path / "bgr")
    persistence.embed_description(model, {"format": "pokedex", "channel_order": "BGR",
                                          "input_scale": 1.0})
    monkeypatch.chdir(tmp_path)
    result, err = answers((model, labels), images, capsys)
    assert result["red"] == "blue" and result["green"] == "green" and notices(err) == []
