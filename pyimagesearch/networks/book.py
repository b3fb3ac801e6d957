"""The book chapters' Keras networks: an MLP and a CNN for MNIST, a CNN for CIFAR-10.

The book compiled these with binary cross-entropy and Adagrad; categorical
cross-entropy (what the toolkit uses) is the right loss for one label per image.

Choices the book left open, made here:
- The MLP standardised each pixel position to a z-score over the training set.
  A model that must carry its own preprocessing and be built before it sees data
  standardises each image instead (LayerNormalization without weights: every image
  gets mean 0 and variance 1 over its pixels), which for digits keeps the shapes and
  drops only the overall brightness; a single-colour image becomes all zeros.
- The book gives no sizes for the MLP's dense layers: 512 ReLU, dropout 0.2,
  twice, as in Keras' own MNIST MLP example.
- The convs without a stated padding use Keras' default, "valid".
"""

import keras
from keras import layers

from pyimagesearch.networks.common import Network, classifier, image_input, preprocess, \
    smallest_size


def build_mlp(*, image_size, channels, num_classes):
    inputs = image_input(image_size)
    x = layers.Flatten(name="flatten")(preprocess(inputs, channels))  # (S * S * C,)
    x = layers.LayerNormalization(center=False, scale=False, name="standardise")(x)
    for index in (1, 2):
        x = layers.Dense(512, activation="relu", name=f"dense{index}")(x)
        x = layers.Dropout(0.2, name=f"dropout{index}")(x)
    return keras.Model(inputs, classifier(x, num_classes), name="mlp")


def _book_cnn(inputs, x, num_classes, name):
    """The book's common ending: dropout 0.3 -> flatten -> dense 240 ELU -> softmax."""
    x = layers.Dropout(0.3, name="dropout")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(240, activation="elu", name="dense1")(x)
    return keras.Model(inputs, classifier(x, num_classes), name=name)


def build_mnist_cnn(*, image_size, channels, num_classes):
    inputs = image_input(image_size)
    # (S, S, C) -> (S - 4, S - 4, 32) -> ((S - 4) / 2, ..., 32); 28 px: 12 * 12 * 32
    x = layers.Conv2D(32, 5, activation="relu", name="conv1")(preprocess(inputs, channels))
    x = layers.MaxPooling2D(2, name="pool1")(x)
    return _book_cnn(inputs, x, num_classes, "mnist_cnn")


def build_cifar_cnn(*, image_size, channels, num_classes):
    inputs = image_input(image_size)
    # (S, S, C) -> (S - 4, ..., 32) -> pool -> conv "same" -> pool; 32 px: 7 * 7 * 32
    x = layers.Conv2D(32, 5, activation="relu", name="conv1")(preprocess(inputs, channels))
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Conv2D(32, 5, padding="same", activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    return _book_cnn(inputs, x, num_classes, "cifar_cnn")


NETWORKS = [
    Network("mlp", build_mlp, family="book",
            description="per-image z-scores, dense 512 ReLU twice (dropout 0.2)",
            min_size=1, default_size=28, default_channels=1),
    Network("mnist-cnn", build_mnist_cnn, family="book",
            description="conv 32 5x5, pool, dropout 0.3, dense 240 ELU",
            min_size=smallest_size(lambda size: (size - 4) // 2),
            default_size=28, default_channels=1),
    Network("cifar-cnn", build_cifar_cnn, family="book",
            description="conv 32 5x5, pool, conv 32 5x5, pool, dropout 0.3, dense 240 ELU",
            min_size=smallest_size(lambda size: (size - 4) // 2 // 2),
            default_size=32, default_channels=3),
]
