"""What a trained network sees: its first filters, each conv block's feature maps, Grad-CAM.

Everything here takes a Keras model and model inputs (already in the model's
channel order and scale: `inference.Classifier.model_inputs` makes them from
the one image reader) and returns NumPy arrays; `plots.py` draws them.

A "conv block" is a run of conv layers at one resolution (SmallerVGGNet has
three: 1 conv at S, 2 at S/3, 2 at S/6). A block is shown by the output of its
last conv after that conv's activation, which is what the next block sees.
"""

import numpy as np


def backbone(model):
    """The nested pretrained network (transfer, efficientnet-lite*) inside `model`, or None.

    Its layers are where the convolutions are: the outer model only holds the input
    (and a fixed grey conversion), the backbone, and the new head."""
    import keras

    return next((layer for layer in model.layers if isinstance(layer, keras.Model)), None)


def conv_layers(model):
    """The model's Conv2D layers, input to output (a backbone's, for a pretrained network)."""
    import keras

    inner = backbone(model)
    if inner is not None:
        return [layer for layer in inner.layers if isinstance(layer, keras.layers.Conv2D)]
    return [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]


def block_outputs(model):
    """[(block name, layer)]: the layer that ends each conv block, input to output.

    The layer is the conv itself, or the Activation right after it (SmallerVGGNet
    puts ReLU in its own layer).
    """
    import keras

    inner = backbone(model)
    if inner is not None:
        return _backbone_blocks(inner)
    layers = model.layers
    ends = []
    for conv in conv_layers(model):
        index = layers.index(conv)
        after = layers[index + 1] if index + 1 < len(layers) else None
        shown = after if isinstance(after, keras.layers.Activation) else conv
        resolution = tuple(conv.output.shape[1:3])
        if ends and ends[-1][0] == resolution:
            ends[-1] = (resolution, shown)  # same block: keep its last conv
        else:
            ends.append((resolution, shown))
    return [(f"block {number}", layer) for number, (_, layer) in enumerate(ends, start=1)]


def _backbone_blocks(inner):
    """A backbone's blocks: at each resolution, the last activation or residual sum (what
    the next stage sees: EfficientNet's blocks end in a linear projection plus a skip)."""
    import keras

    kinds = (keras.layers.Activation, keras.layers.ReLU, keras.layers.Add)
    ends = []
    for layer in inner.layers:
        shape = getattr(layer, "output", None)
        if not isinstance(layer, kinds) or shape is None or len(shape.shape) != 4:
            continue
        resolution = tuple(layer.output.shape[1:3])
        if ends and ends[-1][0] == resolution:
            ends[-1] = (resolution, layer)
        else:
            ends.append((resolution, layer))
    return [(f"block {number}", layer) for number, (_, layer) in enumerate(ends, start=1)]


def first_filters(model):
    """The first conv layer's kernel, (kh, kw, in_channels, filters), or None without one."""
    layers = conv_layers(model)
    return None if not layers else np.asarray(layers[0].get_weights()[0])


def feature_maps(model, inputs):
    """[(block name, maps (h, w, channels))] for one input (1, S, S, 3)."""
    blocks = block_outputs(model)
    if not blocks:
        return []
    *outputs, _, _ = _forward(model, np.asarray(inputs, dtype=np.float32),
                              [layer for _, layer in blocks])
    return [(name, np.asarray(maps)[0]) for (name, _), maps in zip(blocks, outputs)]


def _forward(model, inputs, layers, watch=None):
    """[output of each of `layers`..., the model's output, its logits or None] for `inputs`.

    Inference mode.

    A Sequential model is run layer by layer: after saving and loading, its
    layers' `.output` can belong to another call of the layer than the one
    that leads to the model's output, and gradients would not flow. `watch`
    (a GradientTape) watches each requested output.
    """
    import keras

    inner = backbone(model)
    if inner is not None:  # the outer layers one by one, the backbone as one probe
        probe = keras.Model(inner.inputs, [layer.output for layer in layers] + inner.outputs)
        found, value, logits = [], inputs, None
        for layer in model.layers[1:]:  # after the InputLayer
            if layer is model.layers[-1]:
                logits = _logits(layer, value)
            if layer is inner:
                *found, value = probe([value], training=False)
            else:
                value = layer(value, training=False)
        return list(found) + [value, logits]
    if not isinstance(model, keras.Sequential):
        probe = keras.Model(model.inputs, [layer.output for layer in layers] + model.outputs[:1])
        *found, probabilities = probe([inputs], training=False)
        return found + [probabilities, None]
    found, value, logits = {}, inputs, None
    for layer in model.layers:
        if layer is model.layers[-1]:
            logits = _logits(layer, value)
        value = layer(value, training=False)
        if layer in layers:
            if watch is not None:
                watch.watch(value)
            found[id(layer)] = value
    return [found[id(layer)] for layer in layers] + [value, logits]


GRAD_CAM_BATCH = 4  # images per Grad-CAM pass (each keeps its activations for the gradient)
def _logits(last_layer, inputs):
    """The scores before the final softmax, or None when the last layer is not one."""
    import keras

    if getattr(last_layer, "activation", None) is not keras.activations.softmax:
        return None
    if isinstance(last_layer, keras.layers.Activation):
        return inputs
    if isinstance(last_layer, keras.layers.Dense):
        return keras.ops.matmul(inputs, last_layer.kernel) + last_layer.bias
    return None


def grad_cam(model, inputs, class_index=None):
    """Grad-CAM (Selvaraju et al. 2017) of the last conv block for one input (1, S, S, 3).

    Each channel of the last block's output is weighed by the mean gradient
    of the class's score with respect to it; the weighted sum, through a
    ReLU, is where evidence for the class lies. Returns (heat map (h, w) in
    [0, 1] at that block's resolution, probabilities (C,), class index used):
    the top prediction unless `class_index` is given.
    """
    heats, probabilities, indices = grad_cams(model, inputs, None if class_index is None
                                              else [class_index])
    return heats[0], probabilities[0], indices[0]


def grad_cams(model, inputs, class_indices=None):
    """Grad-CAM of N inputs (N, S, S, 3) in one pass: (heat maps (N, h, w), probabilities
    (N, C), class indices). One pass because images do not interact in inference mode:
    the gradient of the sum of their scores is each image's own (the run page draws a
    dozen mistakes; through Lite0 at 224 px one at a time took 0.35 s each)."""
    inputs = np.asarray(inputs, dtype=np.float32)
    if len(inputs) > GRAD_CAM_BATCH:  # the tape holds every activation: bound the memory
        parts = [grad_cams(model, inputs[start:start + GRAD_CAM_BATCH],
                           None if class_indices is None else
                           class_indices[start:start + GRAD_CAM_BATCH])
                 for start in range(0, len(inputs), GRAD_CAM_BATCH)]
        return (np.concatenate([part[0] for part in parts]),
                np.concatenate([part[1] for part in parts]),
                [index for part in parts for index in part[2]])
    import tensorflow as tf

    blocks = block_outputs(model)
    if not blocks:
        raise ValueError("Grad-CAM needs a conv layer; this model has none")
    inputs = tf.convert_to_tensor(inputs)
    with tf.GradientTape() as tape:
        maps, probabilities, logits = _forward(model, inputs, [blocks[-1][1]], tape)
        # maps (N, h, w, K), probabilities and logits (N, C)
        if class_indices is None:
            class_indices = tf.argmax(probabilities, axis=1).numpy()
        chosen = tf.one_hot(np.asarray(class_indices), probabilities.shape[-1])
        # The score before the softmax, as the paper uses: a confident answer
        # (p rounds to 1.0 in float32) would give the probability no gradient.
        scores = logits if logits is not None else tf.math.log(probabilities + 1e-12)
        score = tf.reduce_sum(scores * chosen)
    gradients = tape.gradient(score, maps)  # (N, h, w, K)
    weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)  # (N, 1, 1, K)
    heats = tf.nn.relu(tf.reduce_sum(maps * weights, axis=-1)).numpy()  # (N, h, w)
    peaks = heats.max(axis=(1, 2), keepdims=True)
    heats = np.where(peaks > 0, heats / np.where(peaks > 0, peaks, 1), heats)
    return (heats, np.asarray(probabilities, dtype=np.float64),
            [int(index) for index in class_indices])


def upsample(heat, size):
    """A heat map (h, w) in [0, 1] resized to (size, size), bilinear."""
    from PIL import Image

    picture = Image.fromarray(np.asarray(heat, dtype=np.float32), mode="F")
    return np.asarray(picture.resize((size, size), Image.BILINEAR), dtype=np.float32)


def write_pictures(classifier, image_paths, output_folder, class_name=None, log=print):
    """Write visualize.py's pictures into `output_folder`; return the paths written.

    One image: filters.png, <name>.block-N.png per conv block and
    <name>.gradcam.png. Several: filters.png and one gradcam-sheet.png.
    Images that cannot be read are skipped with one line each.
    """
    import os

    from pyimagesearch import plots
    from pyimagesearch.cli import printable
    from pyimagesearch.imageio import UnreadableImageError, load_image

    model, size = classifier.model, classifier.image_size
    class_index = None if class_name is None else classifier.class_names.index(class_name)
    os.makedirs(output_folder, exist_ok=True)
    written = []
    if not conv_layers(model):
        log(f"[INFO] {model.name} has no conv layers: filters, feature maps and Grad-CAM "
            "do not apply to it; nothing drawn")
        return written
    written.append(os.path.join(output_folder, "filters.png"))
    plots.plot_filters(first_filters(model), written[-1],
                       title=f"{conv_layers(model)[0].name} filters")
    tiles = []
    for path in image_paths:
        try:
            image = load_image(path, size)  # (S, S, 3) uint8 RGB, as classify.py reads it
        except UnreadableImageError as error:
            log(f"[WARNING] skipped {error}")
            continue
        inputs = classifier.model_inputs(image[None])  # (1, S, S, 3)
        heat, probabilities, index = grad_cam(model, inputs, class_index)
        name = os.path.splitext(os.path.basename(path))[0]
        shown = printable(name)  # matplotlib cannot draw a name that is not UTF-8
        caption = (f"{classifier.class_names[index]}: {probabilities[index]:.1%}"
                   + ("" if class_index is not None or index == probabilities.argmax()
                      else " (not the top answer)"))
        tiles.append((image, upsample(heat, size), f"{shown[:24]}\n{caption}"))
        if len(image_paths) > 1:
            continue
        for block, maps in feature_maps(model, inputs):
            written.append(os.path.join(output_folder, f"{name}.{block.replace(' ', '-')}.png"))
            plots.plot_feature_maps(maps, written[-1], title=f"{shown}, {block}")
        written.append(os.path.join(output_folder, f"{name}.gradcam.png"))
        plots.plot_grad_cam(image, tiles[-1][1], f"{shown}: Grad-CAM for {caption}", written[-1])
    if len(image_paths) > 1 and tiles:
        written.append(os.path.join(output_folder, "gradcam-sheet.png"))
        plots.plot_grad_cam_sheet(tiles, written[-1])
    return written
