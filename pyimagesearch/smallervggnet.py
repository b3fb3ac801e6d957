"""SmallerVGGNet, exactly the tutorial's network (8,678,277 parameters at 96x96x3, 5 classes)."""

import keras
from keras import layers


class SmallerVGGNet:
    @staticmethod
    def build(width, height, depth, classes, rescale=False):
        """Return the tutorial's SmallerVGGNet as a Keras Sequential model.

        With `rescale=True` a Rescaling(1/255) layer comes first (no weights),
        so the model takes raw uint8 pixels and nobody can forget to scale.
        """
        channel_axis = -1  # channels-last, as Keras 3 uses everywhere on CPU/GPU
        model = keras.Sequential(name="smallervggnet")
        model.add(keras.Input(shape=(height, width, depth)))
        if rescale:
            model.add(layers.Rescaling(1.0 / 255, name="rescale_to_unit"))

        # CONV => RELU => POOL: (H, W, 32) -> (H/3, W/3, 32)
        model.add(layers.Conv2D(32, (3, 3), padding="same"))
        model.add(layers.Activation("relu"))
        model.add(layers.BatchNormalization(axis=channel_axis))
        model.add(layers.MaxPooling2D(pool_size=(3, 3)))
        model.add(layers.Dropout(0.25))

        # (CONV => RELU) * 2 => POOL: -> (H/6, W/6, 64)
        for _ in range(2):
            model.add(layers.Conv2D(64, (3, 3), padding="same"))
            model.add(layers.Activation("relu"))
            model.add(layers.BatchNormalization(axis=channel_axis))
        model.add(layers.MaxPooling2D(pool_size=(2, 2)))
        model.add(layers.Dropout(0.25))

        # (CONV => RELU) * 2 => POOL: -> (H/12, W/12, 128)
        for _ in range(2):
            model.add(layers.Conv2D(128, (3, 3), padding="same"))
            model.add(layers.Activation("relu"))
            model.add(layers.BatchNormalization(axis=channel_axis))
        model.add(layers.MaxPooling2D(pool_size=(2, 2)))
        model.add(layers.Dropout(0.25))

        # FC => RELU: (H/12 * W/12 * 128) -> 1024
        model.add(layers.Flatten())
        model.add(layers.Dense(1024))
        model.add(layers.Activation("relu"))
        model.add(layers.BatchNormalization())
        model.add(layers.Dropout(0.5))

        # softmax classifier: -> (classes,)
        model.add(layers.Dense(classes))
        model.add(layers.Activation("softmax"))
        return model
