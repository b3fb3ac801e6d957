"""Transfer learning: an ImageNet backbone (MobileNetV3Small) with a new classifier head.

Why MobileNetV3Small rather than EfficientNetB0 (both in keras.applications, both
take 0-255 pixels with their preprocessing inside, both need at least 32 px): the
backbone has 0.94 M parameters against EfficientNetB0's 4.05 M and about a seventh
of its multiply-adds (56 M against 390 M at 224 px), so it trains and answers several
times faster on a CPU; it
was designed for mobile interpreters, and every op it uses (hard-swish,
squeeze-excite, depthwise convs) is a LiteRT built-in.

Training is two-phase, as in the Keras transfer-learning guide:
1. `build` returns the backbone frozen: fit the new head at the usual learning rate.
2. `freeze_backbone(model, False)`, compile again (a change of `trainable` takes
   effect at compile) with the learning rate times FINE_TUNE_LR_FACTOR, fit again.
Its BatchNormalization layers stay frozen in phase 2 too (Keras 3 runs a frozen BN
layer in inference mode): a small dataset's batch statistics would otherwise
overwrite ImageNet's and undo the pretraining. The guide's other way, calling the
backbone with `training=False`, does not hold in Keras 3: `fit`'s training=True
overrides it (keras-team/keras#20285), which a test here caught.

channels=1 feeds the backbone a grey image in RGB form (luma in all three channels).
"""

import os

import keras
from keras import layers

from pyimagesearch.networks.common import Network, classifier, image_input, to_grey

BACKBONE = "backbone"  # the name of the backbone (a nested Model) inside the model
MIN_SIZE = 32  # keras.applications refuses MobileNetV3 inputs below 32x32
FINE_TUNE_LR_FACTOR = 0.01  # the guide: Adam 1e-3 for the head, then 1e-5 to fine-tune
DROPOUT_RATE = 0.2


def build(*, image_size, channels, num_classes, weights=None):
    """weights: None (random), "imagenet" (Keras' official download, needs the internet
    once) or the path of a weights file saved from this backbone (`save_weights`)."""
    if not (weights is None or weights == "imagenet" or os.path.isfile(weights)):
        raise ValueError(f"weights must be None, 'imagenet' or the path of a weights file "
                         f"(got {weights!r}, which is no file)")
    try:
        backbone = keras.applications.MobileNetV3Small(
            input_shape=(image_size, image_size, 3), include_top=False, pooling="avg",
            weights="imagenet" if weights == "imagenet" else None,
            include_preprocessing=True, name=BACKBONE)  # takes 0-255 pixels
    except ValueError:
        raise
    except Exception as error:  # keras' download raises a bare Exception
        if weights != "imagenet":
            raise
        raise OSError(f"could not get MobileNetV3Small's ImageNet weights ({error}); Keras "
                      f"downloads them once into ~/.keras/models/, or pass weights=<path of "
                      f"a backbone weights file>") from None
    if weights not in (None, "imagenet"):
        backbone.load_weights(weights)
    inputs = image_input(image_size)
    x = to_grey(inputs, copies=3) if channels == 1 else inputs
    features = backbone(x)  # (N, 576)
    x = layers.Dropout(DROPOUT_RATE, name="head_dropout")(features)
    model = keras.Model(inputs, classifier(x, num_classes), name="transfer")
    freeze_backbone(model, True)
    return model


def freeze_backbone(model, frozen):
    """Freeze (phase 1) or unfreeze (phase 2) the backbone, batch norm always frozen;
    compile the model afterwards."""
    backbone = model.get_layer(BACKBONE)
    backbone.trainable = not frozen
    for layer in backbone.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.trainable = False
    return model


NETWORKS = [
    Network("transfer", build, family="transfer",
            description="MobileNetV3Small backbone (ImageNet weights optional), "
                        "dropout 0.2, new softmax head",
            min_size=MIN_SIZE, default_size=224, default_channels=3,
            two_phase=True, pretrained=True, fine_tune_lr_factor=FINE_TUNE_LR_FACTOR),
]
