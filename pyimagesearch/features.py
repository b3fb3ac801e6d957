"""The penultimate features of a trained classifier: the input of its last Dense layer.

Every network here ends in Dense(num_classes) then softmax, so the features
(N, D) plus that layer's kernel and bias give the logits, and from them
calibrated probabilities and the unknown score (confidence.py), whichever
backend (Keras, LiteRT) produced the features.
"""

import numpy as np


def last_dense(model):
    """The model's last Dense layer (the classifier's output layer)."""
    import keras

    for layer in reversed(model.layers):
        if isinstance(layer, keras.layers.Dense):
            return layer
    raise ValueError(f"{model.name} has no Dense layer to take features from")


def feature_model(model):
    """A keras.Model from the classifier's input to [probabilities (N, C), features (N, D)].

    Probabilities first, so its LiteRT export still answers as a plain
    classifier for anything that reads only the first output.
    """
    import keras

    dense = last_dense(model)
    return keras.Model(model.inputs, [model.outputs[0], dense.input],
                       name=f"{model.name}_features")


class FeatureExtractor:
    """extract(images uint8 or float (N, S, S, 3)) -> features (N, D) float32, a batch at a time."""

    def __init__(self, model, batch_size=64):
        self.model = feature_model(model)
        kernel, bias = last_dense(model).get_weights()
        self.kernel, self.bias = kernel, bias  # (D, C), (C,)
        self.batch_size = batch_size

    def __call__(self, images):
        outputs = [np.zeros((0, self.kernel.shape[0]), dtype=np.float32)]
        for start in range(0, len(images), self.batch_size):
            batch = np.asarray(images[start:start + self.batch_size], dtype=np.float32)
            outputs.append(np.asarray(self.model.predict_on_batch(batch)[1], dtype=np.float32))
        return np.concatenate(outputs)
