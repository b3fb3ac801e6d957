"""What every network shares: its registry entry, its input, the preprocessing in
front and the classifier at the end.

Every network takes (image_size, image_size, 3) float32 RGB pixels 0-255, what the
whole toolkit feeds, and does its own preprocessing, so that training, evaluation,
classify.py and the LiteRT copy cannot disagree about it. Everything here is a
stock Keras layer: models save as .keras and load with `safe_mode=True` and no
custom objects, and convert to LiteRT with built-in ops only.
"""

import dataclasses
from typing import Callable

import numpy as np

import keras
from keras import layers

LOGITS = "logits"  # the last Dense of every network: its input is the feature vector
PROBABILITIES = "probabilities"
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights, what Pillow's convert("L") uses


@dataclasses.dataclass(frozen=True)
class Network:
    """One registry entry.

    build: `build(*, image_size, channels, num_classes[, weights])` -> uncompiled model
      (no argument checks: `networks.build` checks them against this entry).
    min_size: the smallest image size whose last feature map still has a pixel.
    sequence: the network reads the image as a sequence of rows (a recurrent network).
    two_phase: train the new head on a frozen backbone first, then fine-tune everything
      at the learning rate times `fine_tune_lr_factor` (see networks.transfer).
    pretrained: `build` takes `weights` ("imagenet" or a weights file of the backbone).
    litert: converts to LiteRT with built-in ops only.
    default_weights: what `weights` is when train.py is given no --weights ("imagenet"
      for a network whose pretrained weights arrive with pip; None: random).
    feature_cache: phase one trains the head alone on the frozen backbone's pooled
      features, computed once per image and cached (pyimagesearch/frozen.py), rather
      than on augmented images through the whole network.
    default_fine_tune_epochs: phase two's epochs when --fine-tune-epochs is not given
      (None: half of --epochs).
    """

    name: str
    build: Callable
    family: str
    description: str
    min_size: int
    default_size: int
    default_channels: int
    sequence: bool = False
    two_phase: bool = False
    pretrained: bool = False
    litert: bool = True
    fine_tune_lr_factor: float | None = None
    default_weights: str | None = None
    feature_cache: bool = False
    default_fine_tune_epochs: int | None = None


def smallest_size(feature_size):
    """The smallest image size for which `feature_size(image_size)`, the side of the
    last feature map (integer arithmetic of the network's convs and pools), is >= 1."""
    size = 1
    while feature_size(size) < 1:
        size += 1
    return size


def image_input(image_size):
    """The model input: (image_size, image_size, 3) RGB pixels 0-255."""
    return keras.Input(shape=(image_size, image_size, 3), name="image")


def to_grey(pixels, copies=1):
    """RGB -> luma, as a 1x1 convolution with fixed weights: (S, S, 3) -> (S, S, copies).

    A stock Conv2D (3 non-trainable weights per copy) rather than a Lambda, so the
    model saves, loads in safe mode and converts to LiteRT. copies=3 gives a grey
    image in RGB form, for a backbone that wants three channels."""
    layer = layers.Conv2D(copies, 1, use_bias=False, trainable=False, name="grey")
    grey = layer(pixels)
    kernel = np.tile(np.asarray(LUMA, np.float32).reshape(1, 1, 3, 1), (1, 1, 1, copies))
    layer.set_weights([kernel])
    return grey


def preprocess(pixels, channels):
    """RGB 0-255 -> `channels` channels (1: grey, 3: RGB) scaled to 0-1."""
    if channels == 1:
        pixels = to_grey(pixels)
    return layers.Rescaling(1.0 / 255, name="rescale")(pixels)


def classifier(features, num_classes):
    """(N, F) features -> (N, num_classes) probabilities: Dense "logits", then softmax."""
    logits = layers.Dense(num_classes, name=LOGITS)(features)
    return layers.Activation("softmax", name=PROBABILITIES)(logits)
