"""SmallerVGGNet, the Pokedex tutorial's network (8,678,277 parameters at 96x96x3, 5 classes)."""

import keras
from keras import layers

from pyimagesearch.networks.common import Network, classifier, image_input, preprocess, \
    smallest_size


def feature_layers():
    """The tutorial's layers from the first conv to the dropout before the classifier.

    Fresh layers on every call, shared by `build` and the old
    `pyimagesearch.smallervggnet.SmallerVGGNet` (whose layer names must not change)."""
    channel_axis = -1  # channels-last, as Keras 3 uses everywhere on CPU/GPU
    stack = []

    def conv_block(filters):
        return [layers.Conv2D(filters, (3, 3), padding="same"), layers.Activation("relu"),
                layers.BatchNormalization(axis=channel_axis)]

    # CONV => RELU => POOL: (H, W, C) -> (H/3, W/3, 32)
    stack += conv_block(32) + [layers.MaxPooling2D(pool_size=(3, 3)), layers.Dropout(0.25)]
    # (CONV => RELU) * 2 => POOL: -> (H/6, W/6, 64)
    stack += conv_block(64) + conv_block(64)  # two calls: two sets of fresh layers
    stack += [layers.MaxPooling2D(pool_size=(2, 2)), layers.Dropout(0.25)]
    # (CONV => RELU) * 2 => POOL: -> (H/12, W/12, 128)
    stack += conv_block(128) + conv_block(128)
    stack += [layers.MaxPooling2D(pool_size=(2, 2)), layers.Dropout(0.25)]
    # FC => RELU: (H/12 * W/12 * 128) -> 1024
    stack += [layers.Flatten(), layers.Dense(1024), layers.Activation("relu"),
              layers.BatchNormalization(), layers.Dropout(0.5)]
    return stack


def build(*, image_size, channels, num_classes):
    inputs = image_input(image_size)
    x = preprocess(inputs, channels)
    for layer in feature_layers():
        x = layer(x)
    return keras.Model(inputs, classifier(x, num_classes), name="smallervggnet")


NETWORKS = [
    Network("smallervggnet", build, family="smallervggnet",
            description="the Pokedex tutorial's VGG-like CNN: 5 convs with batch norm, "
                        "dense 1024",
            min_size=smallest_size(lambda size: size // 3 // 2 // 2),
            default_size=96, default_channels=3),
]
