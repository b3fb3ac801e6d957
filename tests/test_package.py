"""The package installs, and its Python API answers what classify.py answers.

`pip install .` is tried for real, offline: the wheel is built from a copy of
the sources with this venv's setuptools (no build isolation, so nothing is
downloaded), then installed into a fresh venv. The fresh venv borrows the
heavy dependencies (TensorFlow, ...) from this one through a .pth file
rather than installing 2.6 GB again; the package itself, its templates and
the pokedex-* commands come from the wheel only, and run in a folder where
the repository is not on the path.
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig

import numpy as np
import pytest
from PIL import Image

from conftest import BLUE, GREEN, RED, REPO_ROOT, build_color_model, make_image, make_noise_image
from described import describe_as_trained

COMMANDS = ("classify", "serve", "export", "doctor", "visualize", "train", "evaluate")


def _clean_environment():
    """os.environ without what would put the repository on the fresh venv's path."""
    return {key: value for key, value in os.environ.items()
            if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh venv with the package installed from a wheel built from the sources; its root."""
    root = tmp_path_factory.mktemp("install")
    source = root / "source"
    shutil.copytree(os.path.join(REPO_ROOT, "pyimagesearch"), source / "pyimagesearch",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md", "requirements.txt"):
        shutil.copy(os.path.join(REPO_ROOT, name), source / name)

    def run(*command):
        result = subprocess.run([str(part) for part in command], cwd=root, capture_output=True,
                                text=True, timeout=120, env=_clean_environment())
        assert result.returncode == 0, f"{command}:\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
        return result

    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
        "--wheel-dir", root / "wheels", source)
    wheel, = (root / "wheels").glob("pokedex-*.whl")
    venv = root / "fresh venv"  # a space, as users' paths have
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    run(sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "--no-deps",
        "--no-index", wheel)
    site_packages = subprocess.run(
        [venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True, text=True, check=True).stdout.strip()
    # Dependencies from this venv, after the fresh venv's own site-packages.
    with open(os.path.join(site_packages, "borrowed_dependencies.pth"), "w") as handle:
        handle.write(sysconfig.get_path("purelib") + "\n")
    return {"root": root, "venv": venv, "site_packages": site_packages}


def test_the_package_installs_with_its_templates_and_commands(installed):
    venv, site_packages = installed["venv"], installed["site_packages"]
    code = ("import os, pyimagesearch\n"
            "folder = os.path.dirname(pyimagesearch.__file__)\n"
            "print(folder)\n"
            "for part in ('templates/report.html.j2', 'templates/doctor.html.j2',\n"
            "             'server/templates/index.html', 'server/static/app.css',\n"
            "             'server/static/app.js', 'networks/__init__.py', 'commands/classify.py'):\n"
            "    assert os.path.isfile(os.path.join(folder, part)), part\n")
    result = subprocess.run([venv / "bin" / "python", "-c", code], cwd=installed["root"],
                            capture_output=True, text=True, timeout=60, env=_clean_environment())
    assert result.returncode == 0, result.stderr
    folder = result.stdout.strip()
    assert folder == os.path.join(site_packages, "pyimagesearch")
    assert not folder.startswith(REPO_ROOT + os.sep)
    for name in COMMANDS:
        result = subprocess.run([venv / "bin" / f"pokedex-{name}", "--help"],
                                cwd=installed["root"], capture_output=True, text=True,
                                timeout=60, env=_clean_environment())
        assert result.returncode == 0, (name, result.stderr[-2000:])
        assert result.stdout.startswith("usage: "), result.stdout


def test_an_installed_command_classifies_like_the_script(installed, color_model):
    """pokedex-classify runs the installed code: the same JSON as classify.py, and its errors."""
    model, labels = color_model
    image = make_image(installed["root"] / "a red one.png", color=RED)
    command = [installed["venv"] / "bin" / "pokedex-classify", "-m", model, "-l", labels,
               "-i", image, "--json", "-o", installed["root"] / "out.png"]
    result = subprocess.run(command, cwd=installed["root"], capture_output=True, text=True,
                            timeout=120, env=_clean_environment())
    assert result.returncode == 0, result.stderr[-2000:]
    answer = json.loads(result.stdout)
    assert (answer["label"], answer["correct"]) == ("red", True)
    assert (installed["root"] / "out.png").is_file()
    missing = subprocess.run(command[:2] + ["nope.model"] + command[3:], cwd=installed["root"],
                             capture_output=True, text=True, timeout=60, env=_clean_environment())
    assert missing.returncode == 2
    assert missing.stderr.strip() == "classify.py: error: --model: file not found: nope.model"


def test_importing_the_package_stays_cheap():
    """`import pyimagesearch` and `from pyimagesearch import Pokedex` start no TensorFlow."""
    code = ("import sys, pyimagesearch\n"
            "assert 'numpy' not in sys.modules\n"
            "from pyimagesearch import Pokedex\n"
            "assert Pokedex.__module__ == 'pyimagesearch.api'\n"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr


# --- the Python API ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def color_model(tmp_path_factory):
    """conftest's colour model, described inside as train.py describes its models."""
    model, labels = build_color_model(tmp_path_factory.mktemp("model"))
    describe_as_trained(model, labels)
    return model, labels


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Images of every kind the loader handles differently, some with mixed colours."""
    root = tmp_path_factory.mktemp("api") / "my photos"
    make_image(root / "red one.png", size=(20, 20), color=RED)
    make_image(root / "green two.jpg", size=(400, 240), color=GREEN, format="JPEG")  # draft mode
    make_image(root / "blue three.png", size=(300, 90), color=BLUE + (128,), mode="RGBA")
    make_noise_image(root / "noise.png", size=(150, 130), seed=3)  # reduced by a whole factor
    make_noise_image(root / "noise two.jpg", size=(64, 64), format="JPEG", seed=4)
    (root / "notes.txt").write_text("not an image")
    return root


def test_api_answers_what_classify_py_answers(color_model, photos, tmp_path):
    from pyimagesearch import Pokedex

    model, labels = color_model
    result = subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, "classify.py"), "-m", model, "-l", labels,
         "-i", photos, "--json", "--top-k", "3", "-o", tmp_path / "out"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    expected = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(expected) == 5

    notes = []
    dex = Pokedex.load(model, labels, top_k=3, log=notes.append)
    answers = dex.classify_folder(photos)
    assert [answer["path"] for answer in answers] == [answer["path"] for answer in expected]
    assert any("notes.txt" in note for note in notes), notes
    for answer, reference in zip(answers, expected):
        reference.pop("output")
        assert answer["labels"] == reference["labels"], answer["path"]
        np.testing.assert_allclose(answer["probabilities"], reference["probabilities"], atol=1e-6)
        assert {**answer, "probabilities": None} == {**reference, "probabilities": None}
        one = dex.classify(answer["path"])
        assert one["labels"] == answer["labels"]
        np.testing.assert_allclose(one["probabilities"], answer["probabilities"], atol=1e-6)
        # A PIL image opened from the file goes through the file's own steps.
        with Image.open(answer["path"]) as image:
            in_memory = dex.classify_image(image, name=answer["path"])
        assert in_memory == one


def test_api_takes_arrays_and_explains_what_it_cannot_take(color_model, photos):
    from pyimagesearch import Pokedex
    from pyimagesearch.imageio import UnreadableImageError

    dex = Pokedex.load(*color_model)
    assert dex.class_names == ["blue", "green", "red"]
    path = photos / "red one.png"
    pixels = np.asarray(Image.open(path).convert("RGB"))  # (H, W, 3) uint8
    from_array = dex.classify_image(pixels, name=str(path))
    assert from_array == dex.classify(path)
    assert dex.classify_image(pixels[..., 0])["label"] in dex.class_names  # grey (H, W)
    with pytest.raises(UnreadableImageError, match="uint8"):
        dex.classify_image(pixels.astype(np.float32) / 255)
    with pytest.raises(UnreadableImageError, match="not an image file"):
        dex.classify(photos / "notes.txt")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        dex.classify_folder(photos / "missing")
    gray = dex.classify_image(np.full((10, 10, 3), 128, np.uint8))
    assert gray["label"] in dex.class_names and gray["true_label"] is None
    dex.min_confidence = 0.9  # 1/3 each: below it
    assert dex.classify_image(np.full((10, 10, 3), 128, np.uint8))["label"] == "unknown"
