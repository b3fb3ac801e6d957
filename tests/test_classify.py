"""classify.py on one image, folders and globs: top-k, JSON, unknown, summary, outputs.

Most tests call `classify.main` in-process with a tiny "colour model" whose
answers are known: it averages the pixels and maps R, G, B to the classes
red, green, blue. One end-to-end test runs the real command.
"""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import (BLUE, COLOR_CLASSES, GREEN, RED, REPO_ROOT, build_color_model, make_image,
                      make_noise_image, run_main, run_without_tensorflow)
from described import describe_as_trained

GRAY = (128, 128, 128)  # equal evidence for every class: 1/3 each


@pytest.fixture(scope="module")
def color_model(tmp_path_factory):
    """conftest's colour model, described inside as train.py describes its models."""
    model, labels = build_color_model(tmp_path_factory.mktemp("model"))
    describe_as_trained(model, labels)
    return model, labels


@pytest.fixture
def classify(color_model, tmp_path, monkeypatch, capsys):
    """Run classify.main in tmp_path; return (exit code, stdout, stderr)."""
    monkeypatch.chdir(tmp_path)
    model, labels = color_model
    return lambda *args: run_main("classify", ["-m", model, "-l", labels, *args], capsys)


def make_folder(root):
    """photos/ with three labelled images, a sub-folder, junk and a hidden folder."""
    make_image(root / "red one.png", size=(20, 20), color=RED)
    make_image(root / "green two.jpg", size=(40, 24), color=GREEN, format="JPEG")
    make_image(root / "nested" / "blue three.png", size=(12, 30), color=BLUE)
    (root / "notes.txt").write_text("not an image")
    (root / "empty.png").write_bytes(b"")
    truncated = make_noise_image(root / "cut red.png")
    with open(truncated, "r+b") as handle:  # header fine, pixel data cut
        handle.truncate(os.path.getsize(truncated) // 2)
    make_image(root / ".ipynb_checkpoints" / "red copy.png", color=RED)
    return root


def test_one_image_keeps_the_tutorial_line(classify, tmp_path):
    image = make_image(tmp_path / "a red one.png", color=RED)
    code, out, _ = classify("-i", image)
    assert code == 0
    assert re.fullmatch(r"red: 99\.\d\d% \(correct\)", out.splitlines()[0])
    assert out.splitlines()[1] == "[INFO] annotated image written to output/a red one_classified.png"
    assert image_size(tmp_path / "output" / "a red one_classified.png")[0] == 400


def test_folder_skips_unreadable_files_and_summarises(classify, tmp_path):
    make_folder(tmp_path / "photos")
    code, out, err = classify("-i", "photos")
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("[WARNING] skipped")]
    assert len(warnings) == 3, err
    for name in ("notes.txt", "empty.png", "cut red.png"):
        assert sum(name in line for line in warnings) == 1, (name, warnings)
    assert "red copy" not in out + err  # hidden folders are not searched
    assert re.search(r"^photos/red one\.png: red: \d+\.\d\d% \(correct\)$", out, re.M)
    assert re.search(r"^photos/nested/blue three\.png: blue: ", out, re.M)
    summary = [line for line in out.splitlines() if "classified" in line]
    assert summary == ["[INFO] classified 3 image(s), skipped 3 (empty.png, notes.txt, "
                       "cut red.png); accuracy 100.00% (3 of 3 named after a class)"]
    written = sorted(str(p.relative_to(tmp_path / "output")) for p in
                     (tmp_path / "output").rglob("*.png"))
    assert written == ["green two_classified.png", "nested/blue three_classified.png",
                       "red one_classified.png"]


def test_outputs_never_collide_or_overwrite_inputs(classify, tmp_path):
    folder = tmp_path / "same"
    make_image(folder / "red.png", color=RED)
    make_image(folder / "red.jpg", color=RED, format="JPEG")
    make_image(folder / "red_classified.png", color=BLUE)  # an input with an output's name
    before = {path.name: path.read_bytes() for path in folder.iterdir()}
    code, out, err = classify("-i", folder, "-o", folder, "--json")
    assert code == 0, err
    outputs = [json.loads(line)["output"] for line in out.splitlines()]
    assert len(set(outputs)) == 3 and not set(outputs) & {str(folder / name) for name in before}
    assert all((folder / name).read_bytes() == data for name, data in before.items())


def test_glob_pattern_and_no_match(classify, tmp_path):
    make_folder(tmp_path / "photos")
    code, out, err = classify("-i", "photos/*.png")
    assert code == 0, err
    assert "classified 1 image(s), skipped 2" in out  # red one.png; empty.png, cut red.png
    code, _, err = classify("-i", "photos/*.gif")
    assert code == 2 and "no files found in or matching photos/*.gif" in err


def test_a_double_star_glob_classifies_each_file_once_past_a_symlink_loop(classify, tmp_path):
    """An `up -> ..` link made `**` classify the same file 41 times (review 23, item 8)."""
    make_image(tmp_path / "my photos" / "red one.png", color=RED)
    make_image(tmp_path / "my photos" / "sub" / "blue two.png", color=BLUE)
    os.symlink("..", tmp_path / "my photos" / "sub" / "up")
    code, out, err = classify("-i", "my photos/**/*.png")
    assert code == 0, err
    assert "classified 2 image(s)" in out, out


def test_top_k_lists_ranked_labels(classify, tmp_path):
    image = make_image(tmp_path / "green.png", color=GREEN)
    code, out, _ = classify("-i", image, "--top-k", "2")
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("green: ") and lines[0].endswith("(correct)")
    assert re.fullmatch(r"  2\. (red|blue): 0\.\d\d%", lines[1])
    code, out, _ = classify("-i", image, "--top-k", "9", "--json")  # more than 3 classes
    assert json.loads(out)["labels"][0] == "green" and len(json.loads(out)["labels"]) == 3


def test_json_prints_one_object_per_image(classify, tmp_path):
    make_folder(tmp_path / "photos")
    code, out, err = classify("-i", "photos", "--json", "--top-k", "2")
    assert code == 0
    results = [json.loads(line) for line in out.splitlines()]  # stdout is only JSON
    assert [r["path"] for r in results] == ["photos/green two.jpg", "photos/red one.png",
                                            "photos/nested/blue three.png"]
    first = results[0]
    assert set(first) == {"path", "label", "probability", "labels", "probabilities",
                          "true_label", "correct", "output", "unknown_reason"}
    assert first["label"] == first["true_label"] == "green" and first["correct"] is True
    assert first["probabilities"][0] > 0.99 and len(first["labels"]) == 2
    assert "classified 3 image(s)" in err and "top-2 accuracy 100.00%" in err


def test_min_confidence_answers_unknown(classify, tmp_path):
    make_image(tmp_path / "in" / "gray red.png", color=GRAY)
    make_image(tmp_path / "in" / "plain red.png", color=RED)
    code, out, _ = classify("-i", "in", "--min-confidence", "0.5")
    assert code == 0
    assert re.search(r"^in/gray red\.png: unknown \(best guess \w+: 33\.33%; below --min-confidence\)$", out, re.M)
    assert re.search(r"^in/plain red\.png: red: 99\.\d\d% \(correct\)$", out, re.M)
    assert "accuracy 50.00% (1 of 2 named after a class); 1 unknown" in out
    code, out, _ = classify("-i", tmp_path / "in" / "gray red.png", "--min-confidence", "0.5",
                            "--json")
    result = json.loads(out)
    assert result["label"] == "unknown" and result["correct"] is False
    assert result["labels"][0] in COLOR_CLASSES  # the best guess is still reported


@pytest.mark.parametrize("args,fragment", [
    (["--top-k", "0"], "--top-k: must be 1 to 1000"),
    (["--min-confidence", "1.5"], "--min-confidence: must be between 0 and 1"),
    (["--min-confidence", "high"], "--min-confidence: must be a number"),
    (["-i", "nowhere.png"], "--image: file not found: nowhere.png"),
    (["-i", "junk"], "none of the 1 file(s) in junk is a readable image"),
    (["-i", "photos", "-o", "photos/red.png"], "is a file; several images need a folder"),
])
def test_bad_arguments_give_one_line_and_exit_2(classify, tmp_path, args, fragment):
    make_image(tmp_path / "photos" / "red.png", color=RED)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("text")
    if "-i" not in args:
        args = ["-i", "photos/red.png", *args]
    code, _, err = classify(*args)
    errors = [line for line in err.splitlines() if "error:" in line]
    assert code == 2 and len(errors) == 1 and fragment in errors[0], err
    assert "Traceback" not in err


def test_annotation_stays_legible_on_odd_shapes(tmp_path):
    from pyimagesearch import annotate

    lines = ["unknown (best guess charmander: 41.20%)", "2. squirtle: 30.00%"]
    for size in ((10, 1000), (3000, 20), (8, 8), (4000, 3000)):
        path = make_image(tmp_path / f"{size}.png", size=size, color=BLUE)
        output = annotate.annotated_copy(path, lines, "unknown")  # (H, W, 3) BGR
        assert output.shape[1] == 400 and output.shape[0] <= 1200 + 100, size
        band = output[:60, :380]
        assert (band == 255).all(axis=2).mean() > 0.5, size  # white band behind the text
        assert (np.abs(band.astype(int) - (0, 120, 230)).max(axis=2) < 40).any(), size


def test_output_paths_mirror_sub_folders_and_avoid_collisions(tmp_path):
    from pyimagesearch.annotate import output_paths

    inputs = [tmp_path / "a" / "x.png", tmp_path / "a" / "x.jpg", tmp_path / "a" / "b" / "x.png",
              tmp_path / "a" / "y.jpg?resize=2:large"]
    outputs = output_paths(inputs, str(tmp_path / "out"))
    assert [os.path.relpath(path, tmp_path / "out") for path in outputs] == [
        "x_classified.png", "x_classified-2.png", "b/x_classified.png", "y_classified.png"]


def test_classify_folder_end_to_end(color_model, tmp_path):
    """The real command, as a user runs it, in a path with a space."""
    model, labels = color_model
    folder = make_folder(tmp_path / "my photos")
    result = subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, "classify.py"), "-m", model, "-l", labels,
         "-i", folder, "-o", tmp_path / "out put", "--top-k", "2"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert "classified 3 image(s), skipped 3" in result.stdout
    assert len(list((tmp_path / "out put").rglob("*_classified.png"))) == 3


def test_inputs_are_validated_before_tensorflow_starts(color_model, tmp_path):
    """A mistake is reported without TensorFlow's ~8 s import."""
    model, labels = color_model
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.txt").write_text("x")
    stderr = run_without_tensorflow("classify", ["-m", model, "-l", labels, "-i", "junk"],
                                    tmp_path)
    assert "none of the 1 file(s) in junk is a readable image" in stderr


def image_size(path):
    with Image.open(path) as image:  # closed: the suite runs with ResourceWarning as an error
        return image.size


def test_output_extension_no_writer_knows_is_refused_before_tensorflow(color_model, tmp_path):
    model, labels = color_model
    make_image(tmp_path / "red.png", color=RED)
    stderr = run_without_tensorflow("classify", ["-m", model, "-l", labels, "-i", "red.png",
                                                 "-o", "x.xyz"], tmp_path)
    assert stderr.splitlines() == ["classify.py: error: --output: no image writer knows the "
                                   "extension '.xyz' of x.xyz; use .png, .jpg, .webp, .bmp or "
                                   ".tif"]
    assert not (tmp_path / "x.xyz").exists()


def test_folder_run_shuts_its_decoding_threads_down(classify, tmp_path):
    import threading

    def pool_threads():
        return {thread for thread in threading.enumerate()
                if thread.name.startswith("ThreadPoolExecutor")}

    make_folder(tmp_path / "photos")
    before = pool_threads()
    code, _, err = classify("-i", "photos")
    assert code == 0, err
    assert pool_threads() <= before  # the decoding threads were joined
