"""tf.data input pipelines: batches of training and validation images.

Batches are gathered from the memory-mapped uint8 cache (pyimagesearch.dataset)
in parallel and prefetched, so the model never waits on Python and the whole
dataset is never held in RAM as floats.
"""

import numpy as np
import tensorflow as tf

from pyimagesearch.augmentation import (AUGMENTATION, AUGMENTERS,  # noqa: F401 (re-exported)
                                        COLOR_JITTER, make_augmenter)
from pyimagesearch.dataset import row_reader, stratified_split  # noqa: F401 (re-exported)


def make_dataset(images, labels, indices, num_classes, batch_size, training, seed,
                 augmenter="layers", *, color=False, class_weights=None, repeat=False):
    """A tf.data.Dataset of (uint8-valued float32 images (B, S, S, 3), one-hot (B, C)).

    `repeat`: endless, every batch full (a worker of train.py --workers N
    needs the same batch shape at every step; distributed.py).

    With `class_weights` (one float per class) each element also carries
    per-image weights (B,), which model.fit applies to the loss.
    """
    image_shape = images.shape[1:]
    labels_tensor = tf.constant(labels, dtype=tf.int32)
    weights_tensor = None if class_weights is None else tf.constant(class_weights, tf.float32)

    gather = row_reader(images)

    def load_batch(batch_indices):
        batch = tf.numpy_function(gather, [batch_indices], tf.uint8, stateful=False)
        batch = tf.ensure_shape(batch, (None,) + image_shape)
        batch_labels = tf.gather(labels_tensor, batch_indices)
        one_hot = tf.one_hot(batch_labels, num_classes)
        if weights_tensor is None:
            return tf.cast(batch, tf.float32), one_hot
        return tf.cast(batch, tf.float32), one_hot, tf.gather(weights_tensor, batch_labels)

    dataset = tf.data.Dataset.from_tensor_slices(np.asarray(indices, dtype=np.int64))
    if training:
        dataset = dataset.shuffle(len(indices), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    dataset = dataset.batch(batch_size, drop_remainder=repeat).map(load_batch, num_parallel_calls=tf.data.AUTOTUNE)
    if training and (augmenter != "none" or color):
        augment = make_augmenter(augmenter, seed, color=color)
        dataset = dataset.map(lambda x, *rest: (augment(x),) + rest,
                              num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def balanced_class_weights(labels, num_classes):
    """scikit-learn's "balanced" weights, n / (num_classes * count), for classes in `labels`.

    The mean weight over the images is 1, so the loss keeps its scale; a
    class with no image gets weight 0 (it never appears anyway).
    """
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)
    present = counts > 0
    weights = np.zeros(num_classes)
    weights[present] = len(labels) / (present.sum() * counts[present])
    return weights
