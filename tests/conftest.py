"""Shared helpers: tiny generated images and a small folder-per-class dataset.

Everything is drawn with Pillow/numpy inside pytest's tmp_path; nothing is
downloaded and nothing here imports TensorFlow, so these tests stay fast.
"""

import os
import signal
import sys

import numpy as np
import pytest
from PIL import Image

# `python -m pytest` (make test) already puts the repo root on sys.path; a bare
# `pytest` does not, so add it here and both ways import `pyimagesearch`.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

RED = (200, 30, 30)
GREEN = (30, 200, 30)
BLUE = (30, 30, 200)


def make_image(path, size=(32, 32), color=RED, mode="RGB", format="PNG", **save_args):
    """Write a solid-colour image to `path` (any name: the format is explicit)."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    Image.new(mode, size, color).save(path, format=format, **save_args)
    return path


def make_noise_image(path, size=(64, 64), format="PNG", seed=0, **save_args):
    """Write random RGB pixels: compresses badly, so truncating it cuts pixel data."""
    path = os.fspath(path)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format=format, **save_args)
    return path


def assert_color_near(pixel, color, tolerance=12):
    """`pixel` (an RGB triple) is within `tolerance` of `color` in every channel."""
    difference = np.abs(np.asarray(pixel, dtype=int) - np.asarray(color, dtype=int))
    assert difference.max() <= tolerance, f"pixel {tuple(pixel)} is not near {color}"


@pytest.fixture
def dataset_root(tmp_path):
    """A three-class dataset of small PNG/JPEG files, one colour per class.

        dataset/
          bulbasaur/  a.png  b.jpg          (green)
          charmander/ a.png  b.png  c.jpg   (red)
          squirtle/   a.png  b.png          (blue)
    """
    root = tmp_path / "dataset"
    layout = {
        "bulbasaur": (GREEN, ["a.png", "b.jpg"]),
        "charmander": (RED, ["a.png", "b.png", "c.jpg"]),
        "squirtle": (BLUE, ["a.png", "b.png"]),
    }
    for class_name, (color, names) in layout.items():
        for name in names:
            image_format = "JPEG" if name.endswith(".jpg") else "PNG"
            make_image(root / class_name / name, size=(24, 24), color=color, format=image_format)
    return root


# --- a tiny model with known answers, for classify.py and evaluate.py ------------------------

COLOR_CLASSES = ["blue", "green", "red"]  # LabelBinarizer order (sorted)


def build_color_model(folder, image_size=16):
    """Save a model that answers by mean colour, plus its lb.pickle; return both paths.

    It averages the pixels and maps R, G, B to the classes red, green, blue.
    """
    import keras
    from sklearn.preprocessing import LabelBinarizer

    from pyimagesearch import persistence

    model = keras.Sequential([keras.Input((image_size, image_size, 3)),
                              keras.layers.Rescaling(1 / 255),
                              keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(3, activation="softmax")])
    # Rows: input channels R, G, B; columns: classes blue, green, red.
    kernel = 10.0 * np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]], dtype=np.float32)
    model.layers[-1].set_weights([kernel, np.zeros(3, dtype=np.float32)])
    model_path, labels_path = folder / "tiny.model", folder / "lb.pickle"
    persistence.save_model(model, model_path)
    persistence.save_label_binarizer(LabelBinarizer().fit(COLOR_CLASSES), labels_path)
    return model_path, labels_path


@pytest.fixture(scope="module")
def color_model(tmp_path_factory):
    return build_color_model(tmp_path_factory.mktemp("model"))


def run_main(script_name, args, capsys):
    """Run `<script_name>.main(args)` in-process; return (exit code, stdout, stderr)."""
    import importlib

    script = importlib.import_module(script_name)
    try:
        code = script.main([str(arg) for arg in args])
    except SystemExit as exit:
        code = exit.code
    out, err = capsys.readouterr()
    return code or 0, out, err


def training_settings(root, **overrides):
    """train.py's resolved settings for a dataset in root/data and outputs in root (tiny, fast)."""
    settings = {"dataset": str(root / "data"), "model": str(root / "m.model"),
                "labelbin": str(root / "lb.pickle"), "plot": str(root / "plot.png"),
                "cache_dir": str(root / "cache"), "epochs": 4, "batch_size": 8, "lr": 1e-3,
                "patience": 0, "image_size": 16, "val_split": 0.25, "test_split": 0.0,
                "augmenter": "none", "seed": 3, "restart": False, "resume": False}
    settings.update(overrides)
    return settings


def run_without_tensorflow(script_name, args, cwd):
    """Run `<script>.main(args)` in a fresh Python; assert it exits 2 without importing TF.

    Returns its stderr, so the caller can check the one-line message.
    """
    import subprocess

    code = (f"import sys, {script_name}\n"
            "try:\n"
            f"    {script_name}.main({[str(arg) for arg in args]!r})\n"
            "except SystemExit as exit:\n"
            "    assert exit.code == 2, exit.code\n"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True,
                            text=True, timeout=60, env=dict(os.environ, PYTHONPATH=REPO_ROOT))
    assert result.returncode == 0, result.stderr
    return result.stderr


@pytest.fixture(autouse=True, scope="session")
def ctrl_c_reaches_python():
    """Tests deliver Ctrl-C (SIGINT); a shell that starts the suite in the background
    (`make test &`, some CI runners) makes Python ignore it. Restore the usual handler."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield


def with_ctrl_c():
    """preexec_fn for a child that must react to SIGINT even when we were started ignoring it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(autouse=True, scope="session")
def user_cache_in_tmp(tmp_path_factory):
    """The user's cache folder (converted pretrained weights: pyimagesearch/pretrained.py)
    points into this session's temporary folder, for this process and its children:
    tests never write ~/.cache, and each worker converts the weights it needs once."""
    saved = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.getbasetemp() / "xdg-cache")
    yield
    if saved is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = saved


def ctrl_c_in_epoch(monkeypatch, epoch):
    """From now on every keras Model.fit raises KeyboardInterrupt (a Ctrl-C) in the middle
    of epoch `epoch` (0-based); returns a function that puts the real fit back."""
    import keras

    class CtrlCInEpoch(keras.callbacks.Callback):
        current = None

        def on_epoch_begin(self, index, logs=None):
            self.current = index

        def on_train_batch_end(self, batch, logs=None):
            if self.current == epoch:
                raise KeyboardInterrupt

    real_fit = keras.Model.fit

    def fit(self, *args, **kwargs):
        kwargs["callbacks"] = list(kwargs.get("callbacks") or []) + [CtrlCInEpoch()]
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", fit)
    return lambda: monkeypatch.setattr(keras.Model, "fit", real_fit)
