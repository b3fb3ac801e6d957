"""The learning-rate plateau rule, class weights and colour augmentation (train.py's
--lr-schedule, --class-weight and --color-augment)."""

import json

import numpy as np
import pytest

pytest.importorskip("tensorflow")
import keras  # noqa: E402

from pyimagesearch import pipeline, training  # noqa: E402
from pyimagesearch.checkpoints import ResumeError  # noqa: E402
from test_resume import (CtrlCAtEpoch, ScriptedLosses, make_dataset, read_state,  # noqa: E402
                         settings_for)

QUIET = {"log": lambda message: None}


def fit_with(monkeypatch, before=(), after=()):
    """Put callbacks in front of and behind train()'s own."""
    real_fit = keras.Model.fit

    def fit(self, *args, **kwargs):
        kwargs["callbacks"] = list(before) + list(kwargs["callbacks"]) + list(after)
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", fit)
    return real_fit


def test_plateau_cuts_the_rate_after_two_flat_epochs_and_a_resumed_run_keeps_it(
        tmp_path, monkeypatch):
    make_dataset(tmp_path / "data", count=12)
    # Best at epoch 2, then two epochs without a 1% lower val_loss: cut after epoch 4.
    losses = [0.9, 0.5, 0.6, 0.7, 0.8, 0.4, 0.45]
    real_fit = fit_with(monkeypatch, before=[ScriptedLosses(losses)], after=[CtrlCAtEpoch(5)])
    settings = settings_for(tmp_path, epochs=7, lr_schedule="plateau")
    with pytest.raises(training.Interrupted):
        training.train(settings, **QUIET)
    state = read_state(tmp_path)
    assert state["epoch"] == 5 and state["lr"] == pytest.approx(1e-4)
    assert state["history"]["lr"] == pytest.approx([1e-3] * 4 + [1e-4])

    monkeypatch.setattr(keras.Model, "fit", real_fit)
    fit_with(monkeypatch, before=[ScriptedLosses(losses)])
    history = training.train(settings, **QUIET)  # resumes at epoch 6 with the cut rate
    assert history["lr"] == pytest.approx([1e-3] * 4 + [1e-4] * 3)


def test_plateau_never_goes_below_a_hundredth_of_the_starting_rate(tmp_path, monkeypatch,
                                                                   capsys):
    make_dataset(tmp_path / "data", count=12)
    fit_with(monkeypatch, before=[ScriptedLosses([0.5] + [0.9] * 9)])
    history = training.train(settings_for(tmp_path, epochs=10, lr_schedule="plateau"), **QUIET)
    # cuts after epochs 3 and 5: 1e-3 -> 1e-4 -> 1e-5, the floor, where it stays
    assert history["lr"] == pytest.approx([1e-3] * 3 + [1e-4] * 2 + [1e-5] * 5)
    cuts = [line for line in capsys.readouterr().out.splitlines() if "learning rate" in line]
    assert len(cuts) == 2, cuts  # no "1e-05 -> 1e-05" once at the floor


def test_patience_counts_only_improvements_of_one_percent_but_keeps_the_lowest_loss(
        tmp_path, monkeypatch):
    make_dataset(tmp_path / "data", count=12)
    fit_with(monkeypatch, before=[ScriptedLosses([1.0, 0.996, 0.993, 0.991, 0.9, 0.9])])
    history = training.train(settings_for(tmp_path, epochs=6, patience=3), **QUIET)
    assert len(history["loss"]) == 4  # each epoch lower, none by 1%: stops after 3
    description = json.loads((tmp_path / "m.model.settings.json").read_text())
    assert description["best_epoch"] == 4  # the lowest loss is still the one kept


def test_the_tutorial_schedule_decays_as_lr_over_one_plus_decay_times_step(tmp_path):
    make_dataset(tmp_path / "data", count=12)
    data = training.load_data(settings_for(tmp_path), **QUIET)
    model = training.build_model(data, settings_for(tmp_path, epochs=100, lr_schedule="tutorial"))
    schedule = model.optimizer._learning_rate  # the schedule object; .learning_rate is its value
    assert isinstance(schedule, keras.optimizers.schedules.InverseTimeDecay)
    # 100 epochs of 30 steps: still at 97% of the rate at the end, the complaint
    assert float(schedule(3000)) == pytest.approx(1e-3 / (1 + 1e-5 * 3000))
    assert float(schedule(3000)) / 1e-3 > 0.97
    plateau = training.build_model(data, settings_for(tmp_path, lr_schedule="plateau"))
    assert float(plateau.optimizer.learning_rate) == pytest.approx(1e-3)  # a plain rate


def test_resuming_with_another_class_weight_is_refused(tmp_path, monkeypatch):
    make_dataset(tmp_path / "data", count=12)
    real_fit = fit_with(monkeypatch, after=[CtrlCAtEpoch(1)])
    with pytest.raises(training.Interrupted):
        training.train(settings_for(tmp_path), **QUIET)  # no class_weight key: older runs
    monkeypatch.setattr(keras.Model, "fit", real_fit)
    with pytest.raises(ResumeError, match="--class-weight was none"):
        training.train(settings_for(tmp_path, class_weight="balanced"), **QUIET)


def test_balanced_weights_give_every_class_the_same_total_and_average_one():
    labels = np.array([0] * 8 + [1] * 2 + [3] * 10)
    weights = pipeline.balanced_class_weights(labels, 4)
    assert weights[2] == 0  # a class with no training image
    totals = [weights[c] * np.sum(labels == c) for c in (0, 1, 3)]
    assert totals == pytest.approx([totals[0]] * 3)
    assert np.mean(weights[labels]) == pytest.approx(1.0)


def test_weighted_batches_carry_each_images_class_weight():
    images = np.zeros((6, 8, 8, 3), dtype=np.uint8)
    labels = np.array([0, 0, 0, 0, 1, 1])
    weights = pipeline.balanced_class_weights(labels, 2)
    dataset = pipeline.make_dataset(images, labels, np.arange(6), 2, 6, True, 0, "none",
                                    class_weights=weights)
    (x, y, w), = dataset.as_numpy_iterator()
    assert x.shape == (6, 8, 8, 3)
    np.testing.assert_allclose(w, weights[y.argmax(axis=1)])
    assert sorted(np.round(w, 3)) == [0.75] * 4 + [1.5] * 2


def test_class_weights_change_what_training_learns(tmp_path, monkeypatch):
    """A 4-image class beside a 40-image one: weighted training ends with a different model."""
    make_dataset(tmp_path / "data", classes=("big", "small"), count=40)
    for path in sorted((tmp_path / "data" / "small").iterdir())[4:]:
        path.unlink()
    losses = {}
    for weighting in ("none", "balanced"):
        settings = settings_for(tmp_path / weighting, epochs=1, val_split=0.25, restart=True,
                                class_weight=weighting, dataset=str(tmp_path / "data"))
        (tmp_path / weighting).mkdir()
        losses[weighting] = training.train(settings, **QUIET)["loss"][0]
    assert losses["none"] != pytest.approx(losses["balanced"], rel=1e-3)


def test_color_augmentation_changes_light_and_saturation_but_not_hue():
    rng = np.random.default_rng(0)
    red = np.zeros((16, 12, 12, 3), dtype=np.float32)
    red[..., 0] = rng.uniform(150, 220, (16, 1, 1))
    red[..., 1:] = 40
    augment = pipeline.make_augmenter("none", seed=1, color=True)
    out = np.asarray(augment(red))
    assert out.shape == red.shape
    assert out.min() >= 0 and out.max() <= 255
    assert not np.allclose(out, red)
    assert (out.mean(axis=(1, 2)).argmax(axis=1) == 0).all()  # still red, every image
    assert np.std(out.mean(axis=(1, 2, 3))) > np.std(red.mean(axis=(1, 2, 3)))  # varied light


def test_near_a_loss_of_zero_improvements_must_also_be_a_thousandth(tmp_path, monkeypatch):
    make_dataset(tmp_path / "data", count=12)
    # each epoch 2-5% lower, but by less than 0.001: not an improvement
    fit_with(monkeypatch, before=[ScriptedLosses([0.004, 0.0039, 0.0037, 0.0036, 0.0035])])
    history = training.train(settings_for(tmp_path, epochs=5, patience=3), **QUIET)
    assert len(history["loss"]) == 4
