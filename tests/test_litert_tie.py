"""classify.py runs `<model>.tflite` only when it provably belongs to the model, else Keras.

The tie is by content: the run id inside the model's description must equal
the one inside the .tflite, and the label file's sha256 the recorded one.
Every fallback says so in one line; none is an error.
"""

import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import RED, REPO_ROOT, build_color_model, make_image, run_main
from described import describe_as_trained

pytest.importorskip("ai_edge_litert")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two trainings of the colour model ("run a", "run b"), each with its LiteRT copy."""
    import keras

    runs = {}
    for name in ("a", "b"):
        folder = tmp_path_factory.mktemp(f"run {name}")
        keras.backend.clear_session()  # the same layer names, so the same file size
        model, labels = build_color_model(folder)
        describe_as_trained(model, labels, run_id=name * 32, tflite=True)
        runs[name] = folder
    return runs


@pytest.fixture
def run_a(two_runs, tmp_path):
    """A private copy of run a's files: (model, labels) in tmp_path/"model files"."""
    folder = tmp_path / "model files"
    shutil.copytree(two_runs["a"], folder)
    return folder / "tiny.model", folder / "lb.pickle"


def classify_red(run, tmp_path, capsys, *flags):
    model, labels = run
    image = make_image(tmp_path / "a red one.png", color=RED)
    return run_main("classify", ["-m", model, "-l", labels, "-i", image,
                                 "-o", tmp_path / "out.png", *flags], capsys)


def test_success_path_never_imports_tensorflow(run_a, tmp_path):
    """A LiteRT classify of a real image in a fresh process: no tensorflow, no keras."""
    model, labels = run_a
    image = make_image(tmp_path / "my photos" / "a red one.png", color=RED)
    code = ("import sys, classify\n"
            f"classify.main(['-m', {str(model)!r}, '-l', {str(labels)!r}, '-i', {str(image)!r},"
            f" '-o', {str(tmp_path / 'out.png')!r}])\n"
            "leaked = [name for name in ('tensorflow', 'keras') if name in sys.modules]\n"
            "assert not leaked, leaked\n")
    result = subprocess.run([sys.executable, "-W", "error::ResourceWarning", "-c", code],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60,
                            env=dict(os.environ, PYTHONPATH=REPO_ROOT))
    assert result.returncode == 0, result.stderr[-2000:]
    assert re.fullmatch(r"red: 99\.\d\d% \(correct\)", result.stdout.splitlines()[0])
    assert result.stderr == ""
    assert (tmp_path / "out.png").exists()


def test_model_copied_over_with_its_metadata_is_not_paired_with_the_stale_copy(
        two_runs, run_a):
    from pyimagesearch.inference import Classifier

    model, labels = run_a
    assert Classifier(model, labels, log=pytest.fail).backend == "litert"
    before = os.stat(model)
    # `cp -p` of another run's model: same size, and the old modification time.
    shutil.copy2(two_runs["b"] / "tiny.model", model)
    os.utime(model, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(model)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    lines = []
    classifier = Classifier(model, labels, log=lines.append)
    assert classifier.backend == "keras"
    assert len(lines) == 1 and "another training run" in lines[0], lines
    assert f"{model}.tflite" in lines[0] and "b" * 32 in lines[0]


def test_another_label_file_is_checked_by_the_keras_path(run_a):
    from pyimagesearch.inference import Classifier

    model, labels = run_a
    labels.write_bytes(labels.read_bytes() + b".")  # the same classes, other bytes
    assert Classifier(model, labels, log=pytest.fail).backend == "keras"


def test_missing_ai_edge_litert_falls_back_to_keras_with_one_line(run_a, tmp_path, capsys,
                                                                    monkeypatch):
    for name in ("ai_edge_litert", "ai_edge_litert.interpreter"):
        monkeypatch.setitem(sys.modules, name, None)  # `import` raises ImportError
    code, out, err = classify_red(run_a, tmp_path, capsys)
    assert code == 0 and out.startswith("red: 99."), err
    assert len(err.splitlines()) == 1 and "ai-edge-litert is not installed" in err, err


@pytest.mark.parametrize("keep", [0.25, 0.5], ids=["metadata cut", "metadata intact"])
def test_damaged_tflite_falls_back_naming_it(run_a, tmp_path, capsys, keep):
    """A quarter: the metadata cannot be read; a half: it matches but LiteRT refuses the file."""
    tflite = f"{run_a[0]}.tflite"
    with open(tflite, "r+b") as handle:
        handle.truncate(int(os.path.getsize(tflite) * keep))
    code, out, err = classify_red(run_a, tmp_path, capsys)
    assert code == 0 and out.startswith("red: 99."), err
    assert len(err.splitlines()) == 1 and tflite in err and "Keras model instead" in err, err
    assert "Traceback" not in err


def test_backend_keras_reads_no_tflite(run_a, tmp_path, capsys):
    with open(f"{run_a[0]}.tflite", "wb") as handle:
        handle.write(b"garbage")
    code, out, err = classify_red(run_a, tmp_path, capsys, "--backend", "keras")
    assert code == 0 and out.startswith("red: 99.") and err == "", err
