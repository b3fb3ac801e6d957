"""Review 23, items 7, 13, 15, 16 and 22: the command line refuses what it cannot do, in
one line and before any work (sizes and numbers without bounds, a quarantine inside the
dataset, doctor.py's outputs, odd label files and images), and file names that are not
UTF-8 are shown, not crashed on."""

import importlib
import json
import os
import resource
import shutil
import subprocess
import sys

import pytest

from conftest import REPO_ROOT
from pyimagesearch import cli

HUGE = "10000000000000000000"  # 10**19: past int64


def limit_memory():
    """A regression that starts the work (30 GB per image at 100,000 px) fails the test,
    not the machine."""
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))


def run_script(script, *args, cwd, env=None, timeout=60, limited=True):
    """Run a script; `limited`: under limit_memory (TensorFlow reserves more address space)."""
    return subprocess.run([sys.executable, os.path.join(REPO_ROOT, script), *map(str, args)],
                          cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          preexec_fn=limit_memory if limited else None, env=env)


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1, result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def folder(tmp_path):
    """A working folder with a space in its name; the paths named below need not exist."""
    path = tmp_path / "a folder"
    path.mkdir()
    return path


# --- item 13: every numeric flag has a finite range, checked when parsing ---------------

@pytest.mark.parametrize("script,args,flag,valid", [
    ("train.py", ["-d", "no data", "-m", "m.keras", "-l", "lb.pickle", "--image-size", "100000"],
     "--image-size", "1 to 1024"),
    ("prepare.py", ["-d", "no data", "-o", "shards", "--image-size", "100000"],
     "--image-size", "1 to 1024"),
    ("doctor.py", ["-d", "no data", "--image-size", "100000"], "--image-size", "1 to 1024"),
    ("train.py", ["-d", "no data", "-m", "m.keras", "-l", "lb.pickle", "--batch-size", HUGE],
     "--batch-size", "1 to 4096"),
    ("classify.py", ["-m", "no.model", "-l", "lb.pickle", "-i", "x.png", "--batch-size", HUGE],
     "--batch-size", "1 to 4096"),
    ("evaluate.py", ["-m", "no.model", "-l", "lb.pickle", "--batch-size", HUGE],
     "--batch-size", "1 to 4096"),
])
def test_sizes_past_the_bound_are_refused_when_parsing(folder, script, args, flag, valid):
    assert_one_line_error(run_script(script, *args, cwd=folder), flag, valid)
    assert not list(folder.iterdir())  # no cache, no *.tmp-PID.npy


TRAIN = ["-d", "d", "-m", "m", "-l", "l"]
CLASSIFY = ["-m", "m", "-l", "l", "-i", "i"]


@pytest.mark.parametrize("command,args,flag,valid", [
    ("train", TRAIN + ["--epochs", HUGE], "--epochs", "1 to 100000"),
    ("train", TRAIN + ["--fine-tune-epochs", HUGE], "--fine-tune-epochs", "0 to 100000"),
    ("train", TRAIN + ["--patience", HUGE], "--patience", "0 to 100000"),
    ("train", TRAIN + ["--lr", "inf"], "--lr", "finite"),
    ("train", TRAIN + ["--lr", "nan"], "--lr", "finite"),
    ("train", TRAIN + ["--lr", "50"], "--lr", "at most 1"),
    ("train", TRAIN + ["--checkpoint-every", "inf"], "--checkpoint-every", "finite"),
    ("train", TRAIN + ["--checkpoint-every", "1e12"], "--checkpoint-every", "0 to 86400"),
    ("train", TRAIN + ["--num-processes", HUGE], "--num-processes", "1 to 1024"),
    ("train", TRAIN + ["--process-id", HUGE], "--process-id", "0 to 1023"),
    ("train", TRAIN + ["--val-split", "nan"], "--val-split", "finite"),
    ("evaluate", ["-m", "m", "-l", "l", "--epoch", HUGE], "--epoch", "1 to 100000"),
    ("evaluate", ["-m", "m", "-l", "l", "--top-k", HUGE], "--top-k", "1 to 1000"),
    ("classify", CLASSIFY + ["--top-k", HUGE], "--top-k", "1 to 1000"),
    ("classify", CLASSIFY + ["--min-confidence", "inf"], "--min-confidence", "finite"),
    ("prepare", ["-d", "d", "-o", "o", "--per-shard", HUGE], "--per-shard", "1 to 100000"),
])
def test_every_numeric_flag_has_a_finite_range(capsys, command, args, flag, valid):
    module = (importlib.import_module("prepare") if command == "prepare"
              else importlib.import_module(f"pyimagesearch.commands.{command}"))
    with pytest.raises(SystemExit) as exit:
        module.parse_args(args)
    assert exit.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and f"argument {flag}" in error and valid in error, error


def test_the_bounds_keep_the_sizes_the_networks_use():
    assert cli.image_size("1024") == 1024 and cli.image_size("28") == 28
    assert cli.batch_size("4096") == 4096
    assert cli.learning_rate("1") == 1.0 and cli.checkpoint_seconds("0") == 0.0


# --- items 7 and 16: doctor.py checks its paths before the analysis ----------------------

def make_dataset(root):
    """Two classes of two tiny PNGs: enough for doctor.py's analysis to start."""
    from conftest import make_image

    for name, color in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
        for index in range(2):
            make_image(root / name / f"{index}.png", size=(8, 8), color=color)
    return root


@pytest.mark.parametrize("where", ["the dataset", "a class folder", "a link to a class folder",
                                   "a link to the dataset's parent, then inside"])
def test_doctor_refuses_a_quarantine_inside_the_dataset(folder, where):
    data = make_dataset(folder / "my data")
    quarantine = {"the dataset": data, "a class folder": data / "red" / "out"}.get(where)
    if where == "a link to a class folder":
        quarantine = folder / "q link"
        quarantine.symlink_to(data / "red")
    elif where.startswith("a link to the dataset's parent"):
        (folder / "up").symlink_to(folder)
        quarantine = folder / "up" / "my data" / "q"
    result = run_script("doctor.py", "--dataset", data, "--quarantine", quarantine,
                        "--move", "duplicate", cwd=folder)
    assert_one_line_error(result, "--quarantine", "inside the dataset")
    assert not (folder / "my data.doctor.json").exists()  # refused before the analysis
    assert sorted(p.name for p in (data / "red").iterdir()) == ["0.png", "1.png"]


def test_doctor_names_a_bad_model_label_file_or_output_in_one_line(folder, color_model):
    data = make_dataset(folder / "my data")
    (folder / "a file").write_text("x")
    model, labels = color_model
    cases = [
        (["-m", folder / "no model", "-l", labels], "--model: file not found"),
        (["-m", model, "-l", data], "--labelbin: " + f"{data} is a folder"),
        (["--output-prefix", folder / "a file" / "report"], "--output-prefix: cannot write"),
        (["--quarantine", folder / "a file" / "q", "--move", "duplicate"],
         "--quarantine: cannot write"),
    ]
    for args, fragment in cases:
        result = run_script("doctor.py", "--dataset", data, "--cache-dir", folder / "cache",
                            *args, cwd=folder)
        assert_one_line_error(result, fragment)
        assert not (folder / "cache").exists()  # refused before the analysis
    # An output folder that does not exist yet is made.
    result = run_script("doctor.py", "--dataset", data, "--cache-dir", folder / "cache",
                        "--output-prefix", folder / "new folder" / "report", cwd=folder)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (folder / "new folder" / "report.html").exists()


def test_doctor_says_the_label_file_is_of_another_run(folder, color_model, capsys):
    from sklearn.preprocessing import LabelBinarizer

    from conftest import run_main
    from pyimagesearch import persistence

    data = make_dataset(folder / "my data")
    other = folder / "other lb.pickle"
    persistence.save_label_binarizer(LabelBinarizer().fit(["a", "b", "c", "d"]), other)
    # In this process, where the colour model already brought TensorFlow in.
    code, out, err = run_main("doctor", ["--dataset", data, "-m", color_model[0], "-l", other,
                                         "--cache-dir", folder / "cache"], capsys)
    assert code == 2 and err.count("error:") == 1, err
    assert "has 4 classes but" in err and "different training runs" in err, err


# --- item 22: say what a wrong file is ------------------------------------------------------

def test_classify_says_what_a_wrong_file_is(folder, color_model):
    from conftest import make_image

    model, labels = color_model
    make_image(folder / "x.png", size=(8, 8))
    os.mkfifo(folder / "a pipe.png")
    (folder / "labels dir").mkdir()
    cases = [
        (["-m", model, "-l", folder / "labels dir", "-i", folder / "x.png"],
         "--labelbin: " + f"{folder / 'labels dir'} is a folder, not a file"),
        (["-m", model, "-l", labels, "-i", folder / "a pipe.png"],
         "--image: " + f"{folder / 'a pipe.png'} is not a regular file"),
    ]
    for args, fragment in cases:
        # Under a timeout: reading a FIFO would block.
        result = run_script("classify.py", *args, "-o", folder / "out", cwd=folder, timeout=60)
        assert_one_line_error(result, fragment)


def test_a_model_given_as_the_label_file_is_named_in_one_line(color_model):
    from pyimagesearch import persistence

    model, _ = color_model
    with pytest.raises(persistence.ArtifactError) as error:
        persistence.load_label_binarizer(model)
    assert str(error.value) == f"{model}: is a Keras model, not a label file (give the " \
                               "lb.pickle written with it)"


def test_weights_of_another_network_are_one_clear_line(tmp_path):
    import warnings

    from pyimagesearch import architecture

    cnn = architecture.networks().build("cnn", image_size=28, channels=1, num_classes=3)
    cnn.save(tmp_path / "digits.keras")
    cnn.save_weights(tmp_path / "digits.weights.h5")
    settings = {"arch": "mlp", "image_size": 28, "channels": 1, "lr": 1e-3}
    for name, origin in (("digits.keras", "saved from the network 'cnn'"),
                         ("digits.weights.h5", "saved from another network")):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            with pytest.raises(architecture.ArchitectureError) as error:
                architecture.build_model(3, dict(settings, weights=str(tmp_path / name)))
        message = str(error.value)
        assert "\n" not in message and not message.endswith(":"), message
        assert origin in message and "do not fit --arch mlp" in message, message
        assert not [w for w in seen if "keras" in str(w.filename)], seen[:3]


# --- item 15: file names that are not UTF-8 -------------------------------------------------

def test_file_names_that_are_not_utf8_are_shown_not_crashed_on(folder):
    """Trains (1 epoch, 16 px: ~10 s), then classifies and examines, stdout strict UTF-8."""
    from conftest import make_noise_image

    data = folder / "my data"
    for label, name in enumerate(("red", "blue")):
        (data / name).mkdir(parents=True)
        for index in range(6):
            make_noise_image(data / name / f"{index}.png", size=(16, 16), seed=10 * label + index)
    odd_image = os.fsdecode(bytes(data / "red") + b"/bad\xffname.png")
    make_noise_image(odd_image, size=(16, 16), seed=99)
    with open(os.fsdecode(bytes(data / "red") + b"/notes\xff.txt"), "w") as handle:
        handle.write("x")
    odd_copy = os.fsdecode(bytes(data / "blue") + b"/z\xff copy.png")
    shutil.copy(data / "blue" / "0.png", odd_copy)  # a duplicate, moved by --quarantine
    strict = dict(os.environ, PYTHONIOENCODING="utf-8:strict")
    model = folder / "out" / "m.model"
    trained = run_script("train.py", "-d", data, "-m", model, "-l", folder / "out" / "lb.pickle",
                         "-p", folder / "out" / "plot.png", "--cache-dir", folder / "cache",
                         "--arch", "cnn", "--image-size", 16, "--channels", 3, "--epochs", 1,
                         "--batch-size", 8, "--val-split", 0.3, "--test-split", 0, cwd=folder,
                         env=strict, timeout=300, limited=False)
    assert trained.returncode == 0, trained.stderr[-3000:]
    page = (folder / "out" / "m.model.report.html").read_text(encoding="utf-8")
    assert "notes\\xff.txt" in page
    classified = run_script("classify.py", "-m", model, "-l", folder / "out" / "lb.pickle",
                            "-i", data, "-o", folder / "classified", cwd=folder, env=strict,
                            timeout=300, limited=False)
    assert classified.returncode == 0, classified.stderr[-3000:]
    assert "red/bad\\xffname.png: " in classified.stdout
    assert "skipped 1 (notes\\xff.txt)" in classified.stdout
    examined = run_script("doctor.py", "-d", data, "--cache-dir", folder / "cache",
                          "--output-prefix", folder / "doctor", "--quarantine",
                          folder / "quarantine", "--move", "duplicate", cwd=folder, env=strict)
    assert examined.returncode == 0, examined.stderr[-3000:]
    assert "red/notes\\xff.txt: not an image file" in examined.stdout
    report = json.loads((folder / "doctor.json").read_text(encoding="utf-8"))
    assert report["findings"][0]["files"] == ["red/notes\\xff.txt"]
    assert not os.path.exists(odd_copy)
    undone = run_script("doctor.py", "--undo", folder / "quarantine", cwd=folder, env=strict)
    assert undone.returncode == 0 and "moved 1 file(s) back" in undone.stdout, undone.stderr
    assert os.path.exists(odd_copy)  # the log kept its name byte for byte


def test_a_plot_of_mistakes_shows_a_name_that_is_not_utf8(tmp_path):
    from pyimagesearch import evaluation

    image = os.fsdecode(bytes(tmp_path) + b"/bad\xffname.png")
    from conftest import make_image

    make_image(image, size=(8, 8))
    mistake = {"index": 0, "path": image, "true": "red", "predicted": "blue", "probability": 0.9}
    evaluation.plot_worst([mistake], tmp_path / "worst.png")  # matplotlib: UnicodeEncodeError
    assert (tmp_path / "worst.png").stat().st_size > 0
