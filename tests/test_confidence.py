"""Temperature scaling, calibration error and the unknown score (confidence.py), in numpy."""

import zipfile

import numpy as np
import pytest

from pyimagesearch import confidence


def sample_labels(logits, temperature, rng):
    """Labels drawn from softmax(logits / temperature): a model whose true temperature is known."""
    probabilities = confidence.softmax(logits, temperature)
    cumulative = probabilities.cumsum(axis=1)
    return (rng.random((len(logits), 1)) > cumulative).sum(axis=1)


@pytest.mark.parametrize("true_temperature", [0.5, 2.0, 4.0])
def test_fit_temperature_recovers_the_temperature_labels_were_drawn_with(true_temperature):
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 4, (4000, 5))
    labels = sample_labels(logits, true_temperature, rng)
    fitted = confidence.fit_temperature(logits, labels)
    assert fitted == pytest.approx(true_temperature, rel=0.1)


def test_temperature_scaling_lowers_the_calibration_error_of_an_overconfident_model():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 3, (3000, 4))
    labels = sample_labels(logits, 3.0, rng)  # the model's logits are 3x too sharp
    validation, test = slice(0, 1500), slice(1500, 3000)
    temperature = confidence.fit_temperature(logits[validation], labels[validation])
    before = confidence.expected_calibration_error(confidence.softmax(logits[test]), labels[test])
    after = confidence.expected_calibration_error(
        confidence.softmax(logits[test], temperature), labels[test])
    assert before > 0.15 and after < 0.05
    # Accuracy never changes: the argmax is the same.
    assert np.array_equal(confidence.softmax(logits, temperature).argmax(1), logits.argmax(1))


def test_a_validation_split_without_mistakes_keeps_temperature_one():
    logits = np.array([[5.0, 0.0], [0.0, 7.0], [3.0, 1.0]])
    assert confidence.fit_temperature(logits, np.array([0, 1, 0])) == 1.0


def test_reliability_bins_count_every_image_and_ece_is_zero_when_confidence_matches():
    # Confidence 0.75 in every row, right 3 times out of 4: perfectly calibrated.
    probabilities = np.tile([[0.75, 0.25]], (8, 1))
    labels = np.array([0, 0, 0, 1] * 2)
    rows = confidence.reliability_bins(probabilities, labels, bins=10)
    assert sum(row["count"] for row in rows) == 8
    assert confidence.expected_calibration_error(probabilities, labels, bins=10) == \
        pytest.approx(0.0, abs=1e-12)
    assert confidence.expected_calibration_error(probabilities, np.array([1] * 8), bins=10) == \
        pytest.approx(0.75)


def three_clusters(rng, count, dimensions=40, spread=1.0):
    centres = np.eye(3, dimensions) * 12
    labels = np.repeat(np.arange(3), count)
    return centres[labels] + rng.normal(0, spread, (3 * count, dimensions)), labels


def test_mahalanobis_threshold_keeps_the_stated_share_of_known_images_and_flags_far_ones():
    rng = np.random.default_rng(2)
    train, train_labels = three_clusters(rng, 200)
    validation, _ = three_clusters(rng, 200)
    fresh, _ = three_clusters(rng, 400)  # new known images, never used for fitting
    distance = confidence.Mahalanobis.fit(train, train_labels, 3)
    threshold = confidence.unknown_threshold(distance.distance(validation), 0.05)
    called_unknown = np.mean(distance.distance(fresh) > threshold)
    assert 0.02 <= called_unknown <= 0.09
    far = rng.normal(0, 1, (100, 40)) + np.r_[np.zeros(20), np.full(20, 8.0)]  # unlike any class
    assert np.mean(distance.distance(far) > threshold) > 0.95


def test_head_answers_calibrated_probabilities_and_unknown_and_survives_the_zip(tmp_path):
    rng = np.random.default_rng(3)
    train, train_labels = three_clusters(rng, 100, dimensions=8)
    validation, validation_labels = three_clusters(rng, 100, dimensions=8, spread=4.0)
    kernel = np.eye(8, 3)  # logits = the first three feature values
    head = confidence.Head.fit(kernel, np.zeros(3), (train, train), train_labels,
                               (validation, validation), validation_labels)
    probabilities, score, unknown = head.answer(validation[:5], validation[:5])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    assert head.temperature != 1.0 and score.shape == unknown.shape == (5,)

    model = tmp_path / "m.keras"
    with zipfile.ZipFile(model, "w") as archive:
        archive.writestr("config.json", "{}")
    confidence.embed_head(model, head)
    loaded = confidence.read_head(model)
    np.testing.assert_allclose(loaded.answer(validation[:5], validation[:5])[0], probabilities,
                               atol=1e-6)
    assert loaded.threshold == pytest.approx(head.threshold)
    assert confidence.read_head(tmp_path / "missing.keras") is None
    (tmp_path / "broken.keras").write_bytes(b"not a zip")
    assert confidence.read_head(tmp_path / "broken.keras") is None


def test_too_few_validation_images_mean_no_temperature_and_no_unknown():
    rng = np.random.default_rng(4)
    train, train_labels = three_clusters(rng, 30, dimensions=8)
    few, few_labels = three_clusters(rng, 5, dimensions=8, spread=4.0)  # 15 images
    head = confidence.Head.fit(np.eye(8, 3), np.zeros(3), (train, train), train_labels,
                               (few, few), few_labels)
    assert head.temperature == 1.0 and not head.answers_unknown
    assert not head.answer(few, few + 100.0)[2].any()  # even far images are not unknown
    assert head.summary()["unknown_threshold"] is None
    enough, enough_labels = three_clusters(rng, 7, dimensions=8, spread=4.0)  # 21 images
    assert confidence.Head.fit(np.eye(8, 3), np.zeros(3), (train, train), train_labels,
                               (enough, enough), enough_labels).answers_unknown
