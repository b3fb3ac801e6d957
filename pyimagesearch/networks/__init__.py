"""Every network of the source material, by name, as keras.applications and timm do.

    from pyimagesearch import networks
    model = networks.build("cnn", image_size=28, channels=1, num_classes=10)
    networks.names()        # ['birnn', 'cifar-cnn', ...]
    networks.get("cnn")     # its Network entry: family, min_size, default_size, ...

Every model takes (image_size, image_size, 3) float32 RGB pixels 0-255 and returns
probabilities; the preprocessing (grey conversion for channels=1, scaling) is inside
it. It comes uncompiled. Its last Dense layer is named "logits"; `feature_layer(model)`
is the layer whose output feeds it (the feature vector, e.g. for out-of-distribution
scores).

Adding a network: one file in this package that defines its `build` and a list
`NETWORKS` of `Network` entries (see smallervggnet.py), plus one line in FAMILIES below.
"""

import numbers
import os

from pyimagesearch.networks import (book, cifar_article, digits, efficientnet_lite,
                                    smallervggnet, transfer)
from pyimagesearch.networks.common import LOGITS, Network

__all__ = ["Network", "build", "feature_layer", "get", "names"]

FAMILIES = [
    smallervggnet,
    digits,
    book,
    cifar_article,
    transfer,
    efficientnet_lite,
]

_REGISTRY = {network.name: network for family in FAMILIES for network in family.NETWORKS}


def names():
    """The names `build` accepts, sorted."""
    return sorted(_REGISTRY)


def get(name):
    """The registry entry (a `Network`) for `name`."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown network {name!r}; valid names: {', '.join(names())}")
    return _REGISTRY[name]


def build(name, *, image_size, channels, num_classes, weights=None):
    """The network `name` as an uncompiled keras.Model: RGB 0-255 in, probabilities out.

    channels: 1 (the network sees grey) or 3 (RGB). weights: None (random), or for a
    pretrained network "imagenet" or the path of a backbone weights file; for the
    others, the path of a weights file saved from the same network (`save_weights`).
    """
    network = get(name)
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}")
    if not isinstance(num_classes, numbers.Integral) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    if not isinstance(image_size, numbers.Integral) or image_size < network.min_size:
        raise ValueError(f"image size {image_size!r} is too small for {name}: "
                         f"the smallest that works is {network.min_size}")
    arguments = dict(image_size=image_size, channels=channels, num_classes=num_classes)
    if network.pretrained:
        return network.build(weights=weights, **arguments)
    if weights is not None and not os.path.isfile(weights):
        raise ValueError(f"{name} has no pretrained weights: weights must be None or the "
                         f"path of a weights file of this network (got {weights!r})")
    model = network.build(**arguments)
    if weights is not None:
        model.load_weights(weights)
    return model


def feature_layer(model):
    """The layer whose output is the feature vector: the input of the final Dense.

    Works for every model built here (final Dense named "logits") and for the older
    SmallerVGGNet models of train.py (the last Dense in the model). Its `.output` is
    the (N, F) feature tensor: `keras.Model(model.inputs, feature_layer(model).output)`.
    """
    final = next((layer for layer in model.layers if layer.name == LOGITS), None)
    if final is None:
        dense = [layer for layer in model.layers if type(layer).__name__ == "Dense"]
        if not dense:
            raise ValueError(f"model {model.name!r} has no Dense layer to find features by")
        final = dense[-1]
    # The layer that made the Dense's input tensor (Keras records it on every tensor;
    # a Sequential model calls its layers more than once, so `layer.output` won't do).
    history = getattr(final.input, "_keras_history", None)
    if history is None or history.operation not in model.layers:
        raise ValueError(f"model {model.name!r}: no layer produces the input of {final.name!r}")
    return history.operation
