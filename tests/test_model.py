"""SmallerVGGNet is exactly the tutorial's network, and it can learn."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from pyimagesearch.smallervggnet import SmallerVGGNet  # noqa: E402


def test_parameter_count_matches_the_tutorial():
    model = SmallerVGGNet.build(width=96, height=96, depth=3, classes=5)
    assert model.count_params() == 8_678_277


def test_rescaling_adds_no_parameters_and_scales_inputs():
    """The tutorial scaled by 1/255 outside the model; rescale=True must do exactly that inside:
    the same weights on raw pixels give the plain model's answer on pixels / 255."""
    keras.utils.set_random_seed(0)
    plain = SmallerVGGNet.build(24, 24, 3, 4)
    scaled = SmallerVGGNet.build(24, 24, 3, 4, rescale=True)
    assert scaled.count_params() == plain.count_params()
    # Moving statistics away from (0, 1), so inference-mode BN is not an identity.
    for layer in plain.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(np.full(layer.moving_mean.shape, 0.05, np.float32))
            layer.moving_variance.assign(np.full(layer.moving_variance.shape, 0.3, np.float32))
    scaled.set_weights(plain.get_weights())  # Rescaling has none, so they line up
    pixels = np.random.default_rng(0).integers(0, 256, (3, 24, 24, 3)).astype(np.float32)

    expected = plain.predict_on_batch(pixels / 255)
    np.testing.assert_allclose(scaled.predict_on_batch(pixels), expected, rtol=1e-4, atol=1e-6)
    # And the scaling matters: the plain model on raw pixels answers differently.
    assert np.abs(plain.predict_on_batch(pixels) - expected).max() > 0.05


def test_layer_sequence_is_the_tutorials():
    model = SmallerVGGNet.build(96, 96, 3, 5)
    kinds = [type(layer).__name__ for layer in model.layers]
    block = ["Conv2D", "Activation", "BatchNormalization"]
    expected = (block + ["MaxPooling2D", "Dropout"]
                + block * 2 + ["MaxPooling2D", "Dropout"]
                + block * 2 + ["MaxPooling2D", "Dropout"]
                + ["Flatten", "Dense", "Activation", "BatchNormalization", "Dropout",
                   "Dense", "Activation"])
    assert kinds == expected
    assert model.layers[3].pool_size == (3, 3)
    assert [layer.filters for layer in model.layers if hasattr(layer, "filters")] == [32, 64, 64, 128, 128]


@pytest.mark.parametrize("classes", [2, 3])
def test_output_is_a_distribution_and_gradients_reach_every_weight(classes):
    import tensorflow as tf

    model = SmallerVGGNet.build(32, 32, 3, classes, rescale=True)
    images = tf.random.uniform((4, 32, 32, 3), 0, 255)
    with tf.GradientTape() as tape:
        probabilities = model(images, training=True)
        loss = tf.reduce_mean(keras.losses.categorical_crossentropy(
            tf.one_hot([0, 1, 0, 1], classes), probabilities))
    assert probabilities.shape == (4, classes)
    np.testing.assert_allclose(probabilities.numpy().sum(axis=1), 1.0, rtol=1e-5)
    assert not np.isnan(probabilities.numpy()).any()
    gradients = tape.gradient(loss, model.trainable_weights)
    assert all(g is not None and float(tf.reduce_sum(tf.abs(g))) > 0 for g in gradients)
