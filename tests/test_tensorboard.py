"""train.py --tensorboard: logs are written, read back, and a resumed run does not repeat epochs."""

import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("tensorboard")
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from conftest import training_settings  # noqa: E402
from pyimagesearch import training  # noqa: E402
from test_resume import CtrlCAtEpoch, make_dataset  # noqa: E402


def read_logs(folder):
    logs = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0,
                                                        "histograms": 0, "tensors": 0})
    return logs.Reload()


def scalars(logs, tag):
    """[(step, value)] of a tf.summary.scalar tag (TF 2 stores them as tensors)."""
    return [(event.step, float(tf.make_ndarray(event.tensor_proto)))
            for event in logs.Tensors(tag)]


def scalar_steps(logs, tag):
    return [step for step, _ in scalars(logs, tag)]


def tags(logs, plugin):
    return sorted(tag for tag in logs.Tags()["tensors"]
                  if logs.SummaryMetadata(tag).plugin_data.plugin_name == plugin)


def test_a_run_logs_scalars_graph_histograms_and_pictures(tmp_path):
    make_dataset(tmp_path / "data", count=16)
    settings = training_settings(tmp_path, epochs=2, augmenter="layers",
                                 tensorboard=str(tmp_path / "tb logs"))
    training.train(settings, log=lambda message: None)
    train = read_logs(tmp_path / "tb logs" / "train")
    validation = read_logs(tmp_path / "tb logs" / "validation")
    for tag in ("epoch_loss", "epoch_accuracy", "learning_rate", "seconds",
                "images_per_second"):
        assert scalar_steps(train, tag) == [1, 2], tag
    assert scalar_steps(validation, "epoch_loss") == [1, 2]
    description = training.persistence.read_description(settings["model"])
    best = description["best_epoch"]
    assert scalars(validation, "epoch_loss")[best - 1][1] == pytest.approx(
        description["best_val_loss"], rel=1e-5)
    # The tutorial's decay, lr / (1 + lr/epochs * step): below 1e-3 after the first epoch.
    assert 0 < scalars(train, "learning_rate")[0][1] < 1e-3
    assert scalars(train, "images_per_second")[0][1] > 0
    assert train.Graph() is not None
    assert any("kernel" in tag for tag in tags(train, "histograms"))
    assert tags(train, "images") == ["the same images augmented", "training images as read"]
    grid = train.Tensors("the same images augmented")[0]
    width, height = tf.make_ndarray(grid.tensor_proto)[:2]  # images: width, height, PNGs
    assert grid.step == 0 and (int(width), int(height)) == (4 * 16, 4 * 16)  # 16 images, 4 a row
    assert tags(validation, "images") == ["confusion matrix (validation)"]


def test_a_resumed_run_appends_without_repeating_epochs(tmp_path, monkeypatch):
    make_dataset(tmp_path / "data", count=16)
    settings = training_settings(tmp_path, epochs=4, tensorboard=str(tmp_path / "tb"))
    real_fit = keras.Model.fit

    def fit_with_ctrl_c(self, *args, **kwargs):
        kwargs["callbacks"] = list(kwargs["callbacks"]) + [CtrlCAtEpoch(2)]
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", fit_with_ctrl_c)
    with pytest.raises(training.Interrupted):
        training.train(settings, log=lambda message: None)
    monkeypatch.undo()
    # A process killed after logging epoch 3 but before checkpointing it leaves this behind.
    for part in ("train", "validation"):
        with tf.summary.create_file_writer(str(tmp_path / "tb" / part)).as_default():
            tf.summary.scalar("epoch_loss", 99.0, step=3)
    # A kill in the middle of a write cuts the interrupted run's own file short.
    damaged = max((tmp_path / "tb" / "train").iterdir(), key=lambda path: path.stat().st_size)
    damaged.write_bytes(damaged.read_bytes()[:-3])
    lines = []
    training.train(settings, log=lines.append)  # resumes after epoch 2
    warnings = [line for line in lines if "damaged" in line]
    assert len(warnings) == 1 and str(damaged) in warnings[0], warnings
    for part in ("train", "validation"):
        logs = read_logs(tmp_path / "tb" / part)
        assert scalar_steps(logs, "epoch_loss") == [1, 2, 3, 4], part
        assert 99.0 not in [value for _, value in scalars(logs, "epoch_loss")]
    assert len(read_logs(tmp_path / "tb" / "train").Tensors("training images as read")) == 1


def test_a_truncated_events_file_keeps_its_readable_events_with_one_warning(tmp_path):
    from pyimagesearch import tensorboard_logs

    folder = tmp_path / "tb logs" / "train"
    with tf.summary.create_file_writer(str(folder)).as_default():
        for step in (1, 2, 3):
            tf.summary.scalar("epoch_loss", float(step), step=step)
    (path,) = folder.iterdir()
    path.write_bytes(path.read_bytes()[:-5])  # the last record cut short
    lines = []
    tensorboard_logs.truncate(str(tmp_path / "tb logs"), 2, log=lines.append)
    assert len(lines) == 1 and lines[0].startswith(f"[WARNING] {path}: damaged events file")
    assert scalar_steps(read_logs(folder), "epoch_loss") == [1, 2]
    with tf.summary.create_file_writer(str(folder)).as_default():  # logging goes on
        tf.summary.scalar("epoch_loss", 3.0, step=3)
    assert scalar_steps(read_logs(folder), "epoch_loss") == [1, 2, 3]


def test_tensorboard_flag_naming_a_file_is_refused_before_tensorflow(tmp_path):
    from conftest import run_without_tensorflow

    make_dataset(tmp_path / "data", count=2)
    (tmp_path / "logs").write_text("a file")
    stderr = run_without_tensorflow("train", ["-d", tmp_path / "data", "-m", tmp_path / "m.model",
                                              "-l", tmp_path / "lb.pickle", "--tensorboard",
                                              tmp_path / "logs"], cwd=tmp_path)
    assert "--tensorboard" in stderr and "is a file" in stderr
