"""The four digit classifiers of the source material (written for 28x28x1 MNIST, 10 classes).

All end the same way: dense 1024 ReLU, dropout 0.4, a linear "logits" layer, softmax.
Layer names follow the source's list of hidden outputs (conv1, pool1, conv2, pool2,
dense1, logits, probabilities).

The recurrent ones read the image as a sequence of rows, top to bottom: row r is the
image_size * channels values of that row. Their GRUs are unrolled (`unroll=True`):
the sequence length is fixed by the image size, and an unrolled GRU converts to
LiteRT with built-in ops only (a symbolic loop would need TensorFlow ops the plain
interpreter lacks). The cost: the graph grows with the number of rows, so building
and converting at 224 px takes far longer than at 28.
"""

import keras
from keras import layers

from pyimagesearch.networks.common import Network, classifier, image_input, preprocess, \
    smallest_size

DIGITS = dict(family="digits", default_size=28, default_channels=1)


def _head(features, num_classes):
    """(N, F) -> dense 1024 ReLU -> dropout 0.4 -> (N, num_classes) probabilities."""
    x = layers.Dense(1024, activation="relu", name="dense1")(features)
    x = layers.Dropout(0.4, name="dropout")(x)
    return classifier(x, num_classes)


def build_cnn(*, image_size, channels, num_classes):
    inputs = image_input(image_size)
    x = preprocess(inputs, channels)
    # (S, S, C) -> (S/2, S/2, 32) -> (S/4, S/4, 64); 28 px: 7 * 7 * 64 = 3136 features
    x = layers.Conv2D(32, 5, padding="same", activation="relu", name="conv1")(x)
    x = layers.MaxPooling2D(2, strides=2, name="pool1")(x)
    x = layers.Conv2D(64, 5, padding="same", activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(2, strides=2, name="pool2")(x)
    x = layers.Flatten(name="flatten")(x)
    return keras.Model(inputs, _head(x, num_classes), name="cnn")


def _rows(inputs, image_size, channels):
    """(S, S, 3) pixels -> (S, S * channels) sequence of rows, scaled to 0-1."""
    x = preprocess(inputs, channels)
    return layers.Reshape((image_size, image_size * channels), name="rows")(x)


def _gru_stack(sequence, prefix="", go_backwards=False):
    """Two stacked GRUs, 128 then 256 units: (N, T, F) -> (N, 256), the top layer's last state.

    go_backwards reads the sequence from its end; the second GRU then continues
    along that reversed sequence, so the whole stack runs backwards."""
    gru = dict(kernel_initializer="orthogonal", unroll=True)
    x = layers.GRU(128, return_sequences=True, go_backwards=go_backwards,
                   name=f"{prefix}gru1", **gru)(sequence)
    return layers.GRU(256, name=f"{prefix}gru2", **gru)(x)


def build_rnn(*, image_size, channels, num_classes):
    inputs = image_input(image_size)
    x = _gru_stack(_rows(inputs, image_size, channels))
    return keras.Model(inputs, _head(x, num_classes), name="rnn")


def build_birnn(*, image_size, channels, num_classes):
    inputs = image_input(image_size)
    rows = _rows(inputs, image_size, channels)
    forwards = _gru_stack(rows, prefix="forward_")
    backwards = _gru_stack(rows, prefix="backward_", go_backwards=True)
    x = layers.Add(name="sum_of_states")([forwards, backwards])  # (N, 256)
    return keras.Model(inputs, _head(x, num_classes), name="birnn")


def build_cnn_rnn(*, image_size, channels, num_classes):
    inputs = image_input(image_size)
    # (S, S * C) -> (S, 32) -> (ceil(S / 2), 32); "same" pooling keeps an odd last row
    x = layers.Conv1D(32, 5, padding="same", activation="relu",
                      name="conv1")(_rows(inputs, image_size, channels))
    x = layers.MaxPooling1D(2, padding="same", name="pool1")(x)
    x = _gru_stack(x)
    return keras.Model(inputs, _head(x, num_classes), name="cnn_rnn")


NETWORKS = [
    Network("cnn", build_cnn, description="conv 32 5x5, pool, conv 64 5x5, pool, dense 1024",
            min_size=smallest_size(lambda size: size // 2 // 2), **DIGITS),
    Network("rnn", build_rnn, description="rows through GRU 128 then GRU 256, dense 1024",
            min_size=1, sequence=True, **DIGITS),
    Network("birnn", build_birnn,
            description="the rnn's GRU stack forwards and backwards, last states summed",
            min_size=1, sequence=True, **DIGITS),
    Network("cnn-rnn", build_cnn_rnn,
            description="conv1d 32 k5 and pool 2 over the rows, then the rnn's GRU stack",
            min_size=1, sequence=True, **DIGITS),
]
