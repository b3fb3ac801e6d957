"""The CIFAR-10 article's small CNN: a conv base, dense 128 ReLU, softmax.

The article gives the pattern (Conv2D / MaxPooling2D / Dropout repeated) but not
its sizes; here three blocks of a 3x3 "same" conv (32, 64, 64 filters, ReLU),
a 2x2 max-pool and dropout 0.25, the filter counts of TensorFlow's CIFAR-10 CNN
tutorial.
"""

import keras
from keras import layers

from pyimagesearch.networks.common import Network, classifier, image_input, preprocess, \
    smallest_size

FILTERS = (32, 64, 64)


def build(*, image_size, channels, num_classes):
    inputs = image_input(image_size)
    x = preprocess(inputs, channels)
    # (S, S, C) -> (S/2, S/2, 32) -> (S/4, S/4, 64) -> (S/8, S/8, 64); 32 px: 4 * 4 * 64
    for index, filters in enumerate(FILTERS, start=1):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{index}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{index}")(x)
        x = layers.Dropout(0.25, name=f"dropout{index}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(128, activation="relu", name="dense1")(x)
    return keras.Model(inputs, classifier(x, num_classes), name="cifar_small")


NETWORKS = [
    Network("cifar-small", build, family="cifar-article",
            description="3 x (conv 3x3, pool, dropout 0.25) with 32/64/64 filters, dense 128",
            min_size=smallest_size(lambda size: size // 2 // 2 // 2),
            default_size=32, default_channels=3),
]
