"""Every network in the registry builds, learns, saves, loads and converts to LiteRT.

Parametrised over `networks.names()` (ids are the names), on tiny generated images:
three classes, each a stripe pattern in its own colour. The module-scoped `trained`
fixture builds each network once at its test size, takes the gradients of a fresh
model, then trains it a few steps; the tests below check what it recorded and reuse
the trained model for saving and LiteRT.
"""

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from pyimagesearch import networks  # noqa: E402
from pyimagesearch.networks import transfer  # noqa: E402

NAMES = networks.names()
# efficientnet-lite2 is Lite0's code at other multipliers, its port proved against NumPy in
# test_pretrained.py; its rounds here run with `make test-all`, to keep `make test` fast.
PARAMS = [pytest.param(name, marks=pytest.mark.slow) if name == "efficientnet-lite2" else name
          for name in NAMES]
NUM_CLASSES = 3
TRAINING_STEPS = 5


def size_for(network):
    """The size the per-network tests use: the smallest that works, but at least 6 px."""
    return max(network.min_size, 6)


def pattern_images(size, count=8, seed=0):
    """uint8 (count, size, size, 3) images and their labels 0, 1, 2, 0, ...

    Class 0: red horizontal stripes, 1: green vertical stripes, 2: blue checkerboard,
    on black, plus a little noise: learnable in colour, in grey and row by row."""
    rows, columns = np.indices((size, size))
    patterns = [rows % 2, columns % 2, (rows + columns) % 2]
    colours = np.array([[220, 40, 40], [40, 220, 40], [40, 40, 220]])
    labels = np.arange(count) % NUM_CLASSES
    noise = np.random.default_rng(seed).integers(0, 30, (count, size, size, 3))
    images = [patterns[label][..., None] * colours[label] for label in labels] + noise
    return np.clip(images, 0, 255).astype(np.uint8), labels


@pytest.fixture(scope="module", params=PARAMS)
def trained(request):
    """(network, model, images, gradients of the fresh model, training losses)."""
    network = networks.get(request.param)
    keras.utils.set_random_seed(0)
    size = size_for(network)
    model = networks.build(network.name, image_size=size, channels=network.default_channels,
                           num_classes=NUM_CLASSES)
    if network.two_phase:  # phase two: the whole backbone trainable, so its gradients count
        transfer.freeze_backbone(model, False)
    images, labels = pattern_images(size)
    pixels, targets = images.astype(np.float32), keras.ops.one_hot(labels, NUM_CLASSES)
    with tf.GradientTape() as tape:
        loss = keras.ops.mean(keras.losses.categorical_crossentropy(
            targets, model(pixels, training=True)))
    gradients = tape.gradient(loss, model.trainable_weights)
    # Eager steps: for tiny models, tracing a training function costs more than it saves.
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy",
                  run_eagerly=True)
    losses = [float(model.train_on_batch(pixels, targets)) for _ in range(TRAINING_STEPS)]
    return network, model, images, gradients, losses


def test_gradients_reach_every_trainable_weight(trained):
    network, model, _, gradients, _ = trained
    assert len(gradients) == len(model.trainable_weights) > 0
    for weight, gradient in zip(model.trainable_weights, gradients):
        assert gradient is not None, f"{network.name}: no gradient for {weight.path}"
        gradient = np.asarray(gradient)
        assert np.isfinite(gradient).all(), f"{network.name}: NaN/inf gradient for {weight.path}"
        assert np.abs(gradient).max() > 0, f"{network.name}: zero gradient for {weight.path}"


def test_loss_falls_on_tiny_data(trained):
    network, _, _, _, losses = trained
    assert np.isfinite(losses).all()
    assert losses[-1] < losses[0], f"{network.name}: losses {losses}"


def test_saved_model_loads_without_custom_objects(trained, tmp_path):
    network, model, images, _, _ = trained
    path = tmp_path / f"{network.name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, compile=False, safe_mode=True)
    np.testing.assert_allclose(loaded.predict_on_batch(images.astype(np.float32)),
                               model.predict_on_batch(images.astype(np.float32)),
                               atol=1e-6)
    assert networks.feature_layer(loaded).name == networks.feature_layer(model).name


def test_litert_probabilities_match_keras(trained, tmp_path):
    pytest.importorskip("ai_edge_litert")
    from pyimagesearch.litert import LiteRTClassifier, export_tflite

    network, model, images, _, _ = trained
    if not network.litert:
        pytest.skip(f"{network.name} is recorded as not converting to LiteRT")
    path = export_tflite(model, str(tmp_path / f"{network.name}.tflite"))
    probabilities = LiteRTClassifier(path).predict(images)
    expected = model.predict_on_batch(images.astype(np.float32))
    assert probabilities.shape == (len(images), NUM_CLASSES)
    np.testing.assert_allclose(probabilities, expected, atol=1e-4)


def test_feature_layer_feeds_the_logits(trained):
    _, model, images, _, _ = trained
    features = networks.feature_layer(model)
    assert features.output is model.get_layer("logits").input
    extractor = keras.Model(model.inputs, features.output)
    assert extractor.predict_on_batch(images.astype(np.float32)).shape == \
        (len(images), model.get_layer("logits").kernel.shape[0])


@pytest.mark.parametrize("name", PARAMS)
def test_output_is_probabilities_at_two_sizes_grey_and_colour(name):
    network = networks.get(name)
    for size, channels in [(network.min_size, 1), (network.min_size + 5, 3)]:
        model = networks.build(name, image_size=size, channels=channels, num_classes=2)
        assert model.input_shape == (None, size, size, 3)
        assert model.layers[-1].name == "probabilities"
        images = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype(np.float32)
        probabilities = np.asarray(model(images))
        assert probabilities.shape == (2, 2)
        assert np.isfinite(probabilities).all()
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


# The EfficientNet-Lites build at any size ("same" padding): their min_size is a policy
# (the total stride), checked by architecture.resolve (tests/test_pretrained_training.py).
@pytest.mark.parametrize("name", [name for name in NAMES if networks.get(name).min_size > 1
                                  and networks.get(name).family != "efficientnet-lite"])
def test_min_size_is_the_smallest_that_works(name):
    """One pixel less and the network's own build (no registry check) fails or leaves
    a feature map with no pixels."""
    network = networks.get(name)
    try:
        model = network.build(image_size=network.min_size - 1, channels=3, num_classes=2)
    except ValueError:
        return
    shapes = [layer.output.shape for layer in model.layers]
    assert any(0 in shape[1:] for shape in shapes), f"{name} builds at {network.min_size - 1}"


def test_bad_arguments_are_one_line_value_errors():
    with pytest.raises(ValueError, match="unknown network 'resnet'; valid names: birnn, "):
        networks.build("resnet", image_size=32, channels=3, num_classes=2)
    with pytest.raises(ValueError, match="too small for smallervggnet: the smallest that "
                                         "works is 12"):
        networks.build("smallervggnet", image_size=11, channels=3, num_classes=2)
    with pytest.raises(ValueError, match="the smallest that works is 32"):
        networks.build("transfer", image_size=31, channels=3, num_classes=2)
    with pytest.raises(ValueError, match="channels must be 1 .grey. or 3 .RGB., got 2"):
        networks.build("cnn", image_size=28, channels=2, num_classes=2)
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2"):
        networks.build("cnn", image_size=28, channels=1, num_classes=1)
    with pytest.raises(ValueError, match="cnn has no pretrained weights"):
        networks.build("cnn", image_size=28, channels=1, num_classes=2, weights="imagenet")


def test_registry_entries_are_complete():
    assert NAMES == sorted(NAMES) and len(NAMES) == 12
    for name in NAMES:
        network = networks.get(name)
        assert network.name == name and network.description and "\n" not in network.description
        assert network.default_size >= network.min_size >= 1
        assert network.default_channels in (1, 3)
        assert network.two_phase == network.pretrained == \
            (name in ("transfer", "efficientnet-lite0", "efficientnet-lite2"))
        assert network.sequence == (name in ("rnn", "birnn", "cnn-rnn"))


def test_smallervggnet_has_the_tutorials_parameter_count_old_and_new_way():
    from pyimagesearch.smallervggnet import SmallerVGGNet

    model = networks.build("smallervggnet", image_size=96, channels=3, num_classes=5)
    assert model.count_params() == 8_678_277
    for rescale in (False, True):
        old = SmallerVGGNet.build(96, 96, 3, 5, rescale=rescale)
        assert old.count_params() == 8_678_277
        assert networks.feature_layer(old) is old.layers[-3]  # the Dropout(0.5)
        assert keras.Model(old.inputs, old.layers[-3].output).output_shape == (None, 1024)


def test_digits_cnn_parameter_count_follows_the_spec():
    """SEED-MODELS.md: conv 32 5x5 same -> pool -> conv 64 5x5 -> pool -> 7*7*64 -> 1024 -> 10."""
    conv1 = 5 * 5 * 1 * 32 + 32
    conv2 = 5 * 5 * 32 * 64 + 64
    dense1 = 7 * 7 * 64 * 1024 + 1024
    logits = 1024 * 10 + 10
    model = networks.build("cnn", image_size=28, channels=1, num_classes=10)
    trainable = sum(int(np.prod(weight.shape)) for weight in model.trainable_weights)
    assert trainable == conv1 + conv2 + dense1 + logits
    assert model.get_layer("conv1").count_params() == conv1
    assert model.count_params() == trainable + 3  # the fixed RGB -> grey weights


def test_transfer_loads_backbone_weights_from_a_file(tmp_path):
    keras.utils.set_random_seed(1)
    backbone = keras.applications.MobileNetV3Small(
        input_shape=(32, 32, 3), include_top=False, pooling="avg", weights=None)
    path = tmp_path / "backbone.weights.h5"
    backbone.save_weights(path)
    model = networks.build("transfer", image_size=32, channels=3, num_classes=2,
                           weights=str(path))
    loaded = model.get_layer(transfer.BACKBONE).get_weights()
    assert len(loaded) == len(backbone.get_weights())
    for expected, actual in zip(backbone.get_weights(), loaded):
        np.testing.assert_array_equal(actual, expected)
    with pytest.raises(ValueError, match="weights must be None, 'imagenet' or the path"):
        networks.build("transfer", image_size=32, channels=3, num_classes=2,
                       weights=str(tmp_path / "missing.h5"))


def test_imagenet_weights_that_cannot_be_downloaded_are_one_oserror(monkeypatch):
    def offline(**arguments):
        assert arguments["weights"] == "imagenet" and not arguments["include_top"]
        raise Exception("URL fetch failure on https://...: Name or service not known")

    monkeypatch.setattr(keras.applications, "MobileNetV3Small", offline)
    with pytest.raises(OSError, match="could not get MobileNetV3Small's ImageNet weights "
                                      ".URL fetch failure.*pass weights=<path"):
        networks.build("transfer", image_size=32, channels=3, num_classes=2, weights="imagenet")


def test_a_network_loads_its_own_weights_file(tmp_path):
    keras.utils.set_random_seed(3)
    model = networks.build("cifar-small", image_size=8, channels=3, num_classes=2)
    path = tmp_path / "cifar small.weights.h5"
    model.save_weights(path)
    keras.utils.set_random_seed(4)
    again = networks.build("cifar-small", image_size=8, channels=3, num_classes=2,
                           weights=str(path))
    for expected, actual in zip(model.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(actual, expected)
    with pytest.raises(ValueError, match="cifar-small has no pretrained weights"):
        networks.build("cifar-small", image_size=8, channels=3, num_classes=2,
                       weights=str(tmp_path / "missing.weights.h5"))


def test_transfer_freezes_the_backbone_then_fine_tunes_with_batch_norm_frozen():
    keras.utils.set_random_seed(2)
    model = networks.build("transfer", image_size=32, channels=1, num_classes=NUM_CLASSES)
    backbone = model.get_layer(transfer.BACKBONE)
    pixels = pattern_images(32)[0].astype(np.float32)

    def trainable_layers():
        return {weight.path.split("/")[0] for weight in model.trainable_weights}

    # Phase one: only the new head learns.
    assert trainable_layers() == {"logits"}
    # Phase two: the backbone learns too, but batch norm keeps its (ImageNet) statistics
    # and its scale and offset, even in a training step.
    transfer.freeze_backbone(model, False)
    batch_norms = [layer for layer in backbone.layers
                   if isinstance(layer, keras.layers.BatchNormalization)]
    assert batch_norms and not trainable_layers() & {layer.name for layer in batch_norms}
    assert {"conv", "logits"} <= trainable_layers()
    before = [np.array(weight) for layer in batch_norms for weight in layer.weights]
    first_mean = np.array(batch_norms[0].moving_mean)
    model(pixels, training=True)
    after = [np.array(weight) for layer in batch_norms for weight in layer.weights]
    assert all(np.array_equal(old, new) for old, new in zip(before, after))
    # ... and a plain trainable batch norm layer would have moved (the check can fail).
    batch_norms[0].trainable = True
    batch_norms[0](np.ones((2, 4, 4, batch_norms[0].moving_mean.shape[0]), np.float32),
                   training=True)
    assert not np.array_equal(np.array(batch_norms[0].moving_mean), first_mean)
