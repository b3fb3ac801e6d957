"""What a trained classifier sees: the features its confidence head works on.

Every network here ends in Dense(num_classes) then softmax. Two feature
vectors per image serve confidence.py, whichever backend (Keras, LiteRT)
computes them:

    penultimate  the input of that last Dense layer (N, D): with its kernel and
                 bias it gives the logits, hence calibrated probabilities
    distance     the last 4-D feature map averaged over space (N, K), where the
                 network has one (the conv networks), else the penultimate
                 features again: the unknown score is a distance in this space.
                 bench/bench_unknown.py measured it: on the shift benchmark
                 (9 species, photographs as unknowns) the pooled conv map
                 separated photographs with AUROC 0.89 where the penultimate
                 features managed 0.51.
"""

import numpy as np


def last_dense(model):
    """The model's last Dense layer (the classifier's output layer)."""
    import keras

    for layer in reversed(model.layers):
        if isinstance(layer, keras.layers.Dense):
            return layer
    raise ValueError(f"{model.name} has no Dense layer to take features from")


def last_feature_map(model):
    """The output tensor of the last top-level layer with a 4-D (N, H, W, C) output, or None.

    None for a network with a pretrained backbone (a nested model that pools its own
    last map): its pooled features are the penultimate ones, and what lies before the
    backbone is the image itself (or its grey copy), no feature map at all.
    """
    import keras

    if any(isinstance(layer, keras.Model) for layer in model.layers):
        return None
    for layer in reversed(model.layers):
        if isinstance(layer, keras.layers.InputLayer):
            return None
        output = getattr(layer, "output", None)
        if output is not None and len(output.shape) == 4:
            return output
    return None


def feature_model(model):
    """A keras.Model: input -> [probabilities (N, C), penultimate (N, D)(, pooled map (N, K))].

    Probabilities first, so its LiteRT export still answers as a plain
    classifier for anything that reads only the first output.
    """
    import keras

    outputs = [model.outputs[0], last_dense(model).input]
    feature_map = last_feature_map(model)
    if feature_map is not None:
        outputs.append(keras.layers.GlobalAveragePooling2D(name="pooled_feature_map")(feature_map))
    return keras.Model(model.inputs, outputs, name=f"{model.name}_features")


def split_outputs(outputs):
    """(penultimate, distance features) from a feature model's outputs after the probabilities."""
    penultimate = np.asarray(outputs[0], dtype=np.float32)
    return penultimate, (np.asarray(outputs[1], dtype=np.float32) if len(outputs) > 1
                         else penultimate)


class FeatureExtractor:
    """extract(images (N, S, S, 3), 0-255) -> (penultimate (N, D), distance (N, K)) float32."""

    def __init__(self, model, batch_size=64):
        self.model = feature_model(model)
        kernel, bias = last_dense(model).get_weights()
        self.kernel, self.bias = kernel, bias  # (D, C), (C,)
        self.batch_size = batch_size

    def __call__(self, images):
        parts = []
        for start in range(0, len(images), self.batch_size):
            batch = np.asarray(images[start:start + self.batch_size], dtype=np.float32)
            parts.append(split_outputs(self.model.predict_on_batch(batch)[1:]))
        if not parts:
            sizes = [int(output.shape[-1]) for output in self.model.outputs[1:]]
            empty = [np.zeros((0, size), np.float32) for size in sizes]
            return split_outputs(empty)
        return tuple(np.concatenate([part[i] for part in parts]) for i in range(2))
