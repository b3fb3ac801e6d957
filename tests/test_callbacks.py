"""PreciseBatchNorm: BN moving statistics become the population statistics of the
un-augmented batches it is given, and that is what makes inference mode work."""

import numpy as np
import pytest

pytest.importorskip("tensorflow")
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers  # noqa: E402

from pyimagesearch.callbacks import PreciseBatchNorm  # noqa: E402
from pyimagesearch.smallervggnet import SmallerVGGNet  # noqa: E402

# float32 batch moments against float64 expectations: a few ulps of slack.
RTOL, ATOL = 1e-4, 1e-5


def image_batches(images, batch_size, num_classes=2):
    """A batched (images, one-hot) tf.data set, in order, as training.py gives the callback."""
    labels = np.arange(len(images)) % num_classes
    one_hot = np.eye(num_classes, dtype=np.float32)[labels]
    return tf.data.Dataset.from_tensor_slices((images.astype(np.float32), one_hot)).batch(batch_size)


def random_images(count, size=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, size, size, 3)).astype(np.float32)


def bn_layers(model):
    return [layer for layer in model.layers if isinstance(layer, layers.BatchNormalization)]


def spoil(batch_norms):
    """Moving statistics nobody could mistake for real ones."""
    for layer in batch_norms:
        layer.moving_mean.assign(np.full(layer.moving_mean.shape, -7.0, np.float32))
        layer.moving_variance.assign(np.full(layer.moving_variance.shape, 1234.0, np.float32))


def recalibrate(model, batches):
    callback = PreciseBatchNorm(batches)
    callback.set_model(model)
    callback.on_test_begin()
    return callback


def population_moments(activations):
    """Per-channel mean and (biased) variance over every image and position, in float64."""
    values = np.concatenate([np.asarray(a, np.float64).reshape(-1, a.shape[-1])
                             for a in activations])
    return values.mean(axis=0), values.var(axis=0)


def assert_moving_statistics(layer, activations):
    mean, variance = population_moments(activations)
    np.testing.assert_allclose(layer.moving_mean.numpy(), mean, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(layer.moving_variance.numpy(), variance, rtol=RTOL, atol=ATOL)


# --- the statistics are the population's -------------------------------------------------------

def small_model(*middle):
    """(B, 8, 8, 3) -> the given layers -> average pool -> softmax over 2 classes."""
    return keras.Sequential([keras.Input((8, 8, 3)), *middle, layers.GlobalAveragePooling2D(),
                             layers.Dense(2, activation="softmax")])


def one_bn_model():
    return small_model(layers.Conv2D(4, 3, name="conv"),  # (B, 6, 6, 4)
                       layers.BatchNormalization(name="bn"))


def test_one_bn_layer_gets_the_population_mean_and_variance():
    keras.utils.set_random_seed(0)
    model = one_bn_model()
    # Batches that differ from each other, so the pooled variance must include
    # the spread of the batch means (law of total variance), not only the
    # average within-batch variance.
    images = random_images(12)
    images[4:8] *= 0.3
    images[8:] = images[8:] * 0.5 + 120
    bn = model.get_layer("bn")
    spoil([bn])
    weights_before = [w.numpy().copy() for w in model.weights
                      if w is not bn.moving_mean and w is not bn.moving_variance]

    recalibrate(model, image_batches(images, 4))

    conv_output = model.get_layer("conv")(images)  # no BN before it: training mode is moot
    assert_moving_statistics(bn, [conv_output])
    within_batch_only = np.mean([np.var(np.asarray(conv_output[i:i + 4]), axis=(0, 1, 2))
                                 for i in (0, 4, 8)], axis=0)
    # Averaging the within-batch variances alone would miss by far more than the tolerance.
    assert (bn.moving_variance.numpy() > 1.5 * within_batch_only).any()
    # Only the BN moving statistics change; the training step keeps its momentum.
    weights_after = [w.numpy() for w in model.weights
                     if w is not bn.moving_mean and w is not bn.moving_variance]
    for before, after in zip(weights_before, weights_after, strict=True):
        np.testing.assert_array_equal(before, after)
    assert bn.momentum == 0.99


def two_bn_model():
    return small_model(layers.Conv2D(4, 3, name="conv1"),  # (B, 6, 6, 4)
                       layers.BatchNormalization(name="bn1"),
                       layers.Activation("relu"),
                       layers.Conv2D(5, 3, name="conv2"),  # (B, 4, 4, 5)
                       layers.BatchNormalization(name="bn2"))


def test_two_bn_layers_each_get_the_statistics_of_their_training_mode_inputs():
    keras.utils.set_random_seed(1)
    model = two_bn_model()
    bn1, bn2 = model.get_layer("bn1"), model.get_layer("bn2")
    # A gamma and beta that matter, so bn2's input depends on bn1 really normalising.
    bn1.gamma.assign([0.5, 1.0, 2.0, 3.0])
    bn1.beta.assign([0.2, -0.5, 0.0, 1.0])
    images = random_images(12, seed=1)
    images[6:] = images[6:] * 0.4 + 90
    spoil([bn1, bn2])

    recalibrate(model, image_batches(images, 6))

    # Layer by layer, as the callback's training-mode pass does: bn1 normalises
    # each batch with that batch's own moments.
    conv1_outputs, conv2_outputs = [], []
    gamma, beta = bn1.gamma.numpy(), bn1.beta.numpy()
    for start in (0, 6):
        conv1 = np.asarray(model.get_layer("conv1")(images[start:start + 6]), np.float64)
        mean, variance = conv1.mean(axis=(0, 1, 2)), conv1.var(axis=(0, 1, 2))
        normalised = (conv1 - mean) / np.sqrt(variance + bn1.epsilon) * gamma + beta
        conv2 = model.get_layer("conv2")(np.maximum(normalised, 0).astype(np.float32))
        conv1_outputs.append(conv1)
        conv2_outputs.append(conv2)
    assert_moving_statistics(bn1, conv1_outputs)
    assert_moving_statistics(bn2, conv2_outputs)


def test_a_short_last_batch_counts_by_its_number_of_images():
    keras.utils.set_random_seed(2)
    model = one_bn_model()
    images = random_images(10, seed=2)
    images[8:] = images[8:] * 0.2 + 200  # the short batch (2 of 10 images) is unlike the rest
    recalibrate(model, image_batches(images, 4))  # batches of 4, 4, 2
    assert_moving_statistics(model.get_layer("bn"), [model.get_layer("conv")(images)])


def test_smallervggnet_first_bn_layer_and_every_bn_layer_is_recalibrated():
    """The network training.py recalibrates, on uint8-valued pixels as the pipeline gives them."""
    keras.utils.set_random_seed(3)
    model = SmallerVGGNet.build(24, 24, 3, 3, rescale=True)
    batch_norms = bn_layers(model)
    assert len(batch_norms) == 6
    spoil(batch_norms)
    images = random_images(16, size=24, seed=3)

    recalibrate(model, image_batches(images, 8, num_classes=3))

    # The first BN sits before any Dropout, so its input is deterministic:
    # Rescaling -> Conv2D -> ReLU.
    before_first_bn = keras.Model(model.inputs[0], batch_norms[0].input)
    assert_moving_statistics(batch_norms[0], [before_first_bn(images)])
    # The later ones follow Dropout (random in the callback's training-mode
    # pass), so here only: each was replaced by finite, plausible statistics.
    for layer in batch_norms[1:]:
        mean, variance = layer.moving_mean.numpy(), layer.moving_variance.numpy()
        assert np.isfinite(mean).all() and np.isfinite(variance).all()
        assert (variance >= 0).all() and (variance < 1234).all() and (mean != -7).all()
        assert (mean >= 0).all()  # each follows a ReLU


def test_a_second_call_uses_the_current_weights():
    """The traced forward pass is cached; it must not have frozen the weights it first saw."""
    keras.utils.set_random_seed(4)
    model = one_bn_model()
    images = random_images(8, seed=4)
    batches = image_batches(images, 4)
    callback = recalibrate(model, batches)
    conv = model.get_layer("conv")
    conv.kernel.assign(conv.kernel * 3.0 + 0.1)  # as if an epoch of training had passed
    callback.on_test_begin()
    assert_moving_statistics(model.get_layer("bn"), [conv(images)])


# --- why: stale moving statistics break inference mode ---------------------------------------

def dark_and_bright(count, seed):
    """Two classes a model can only tell apart after BN centres the brightness."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 2
    levels = np.where(labels == 1, 170.0, 80.0)[:, None, None, None]
    images = np.clip(rng.normal(levels, 25, (count, 8, 8, 3)), 0, 255).astype(np.float32)
    return images, labels


def inference_accuracy(model, images, labels):
    probabilities = model(images, training=False).numpy()
    return float(np.mean(probabilities.argmax(axis=1) == labels))


@pytest.mark.parametrize("seed", [0, 1])
def test_recalibration_repairs_inference_after_a_short_training(seed):
    """The docstring's case in miniature: a few steps with momentum 0.99 leave the moving
    statistics near their initial (0, 1); training-mode accuracy is high, inference-mode
    accuracy on the very same images is not, until the callback re-estimates them."""
    keras.utils.set_random_seed(seed)
    images, labels = dark_and_bright(64, seed)
    one_hot = np.eye(2, dtype=np.float32)[labels]
    model = small_model(layers.Conv2D(4, 3),  # on raw 0-255 pixels: large activations
                        layers.BatchNormalization(), layers.Activation("relu"))
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="categorical_crossentropy")
    model.fit(images, one_hot, batch_size=16, epochs=5, verbose=0)  # 20 steps

    training_mode = np.mean(model(images, training=True).numpy().argmax(axis=1) == labels)
    stale = inference_accuracy(model, images, labels)
    recalibrate(model, image_batches(images, 16))
    precise = inference_accuracy(model, images, labels)

    assert training_mode >= 0.95  # it did learn
    assert stale <= 0.7, stale  # but inference mode with stale statistics cannot use it
    assert precise >= 0.95 and precise - stale >= 0.25, (stale, precise)
