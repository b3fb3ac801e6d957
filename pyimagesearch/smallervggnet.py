"""SmallerVGGNet, exactly the tutorial's network (8,678,277 parameters at 96x96x3, 5 classes).

The network lives in `pyimagesearch.networks.smallervggnet` (use `networks.build`);
this class keeps the tutorial's call working and builds the same layers, with the
same names, as before.
"""

import keras
from keras import layers

from pyimagesearch.networks.smallervggnet import feature_layers


class SmallerVGGNet:
    @staticmethod
    def build(width, height, depth, classes, rescale=False):
        """Return the tutorial's SmallerVGGNet as a Keras Sequential model.

        With `rescale=True` a Rescaling(1/255) layer comes first (no weights),
        so the model takes raw uint8 pixels and nobody can forget to scale.
        """
        model = keras.Sequential(name="smallervggnet")
        model.add(keras.Input(shape=(height, width, depth)))
        if rescale:
            model.add(layers.Rescaling(1.0 / 255, name="rescale_to_unit"))
        for layer in feature_layers():
            model.add(layer)
        # softmax classifier: -> (classes,)
        model.add(layers.Dense(classes))
        model.add(layers.Activation("softmax"))
        return model
