"""Augmentation of training batches: the tutorial's geometric transforms and colour jitter.

Two augmenters take the same settings (AUGMENTATION): Keras preprocessing
layers that run as TF ops inside the tf.data graph (the default), and the
tutorial's literal ImageDataGenerator. Both work on float32 batches of 0-255
pixels (B, S, S, 3); pipeline.make_dataset applies them to training batches only.
"""

import math

import numpy as np
import tensorflow as tf
import keras
from keras import layers

# The tutorial's ImageDataGenerator settings, the single source for both
# augmenters. Note: ImageDataGenerator reads shear_range as degrees, so the
# tutorial's 0.2 is a 0.2 degree shear (almost none); we keep it literal.
AUGMENTATION = {
    "rotation_range": 25,  # degrees, +/-
    "width_shift_range": 0.1,  # fraction of width, +/-
    "height_shift_range": 0.1,
    "shear_range": 0.2,  # degrees, +/-
    "zoom_range": 0.2,  # scale in [0.8, 1.2], x and y independently
    "horizontal_flip": True,
    "fill_mode": "nearest",
}
AUGMENTERS = ("layers", "imagedatagenerator", "none")
# train.py --color-augment: brightness +/-20% of the range, contrast factor in [0.7, 1.3],
# saturation drawn in [0.35, 0.65] (Keras: 0.5 leaves it, i.e. x0.54 to x1.86).
COLOR_JITTER = {"brightness": 0.2, "contrast": 0.3, "saturation": (0.35, 0.65)}


def make_augmenter(name, seed, color=False):
    """Return a function (B, S, S, 3) float32 -> augmented, usable inside tf.data.

    `color` adds brightness, contrast and saturation jitter (COLOR_JITTER)
    after the geometric augmenter `name` (which may be "none").
    """
    if name not in AUGMENTERS:
        raise ValueError(f"unknown augmenter {name!r}; choose one of {', '.join(AUGMENTERS)}")
    steps = []
    if name == "layers":
        steps.append(_layers_augmenter(seed))
    elif name == "imagedatagenerator":
        steps.append(_image_data_generator_augmenter())
    if color:
        steps.append(_color_augmenter(seed + 10))

    def augment(batch):
        for step in steps:
            batch = step(batch)
        return batch

    return augment


def _color_augmenter(seed):
    """Brightness, contrast and saturation jitter on 0-255 pixels (hue is left alone:
    it is what tells a charmander from a squirtle)."""
    jitter = COLOR_JITTER
    model = keras.Sequential([
        layers.RandomBrightness(jitter["brightness"], value_range=(0, 255), seed=seed),
        layers.RandomContrast(jitter["contrast"], value_range=(0, 255), seed=seed + 1),
        layers.RandomSaturation(jitter["saturation"], value_range=(0, 255), seed=seed + 2),
    ], name="color_augmentation")
    return lambda batch: tf.clip_by_value(_apply(model, batch), 0.0, 255.0)


def _layers_augmenter(seed):
    """Keras preprocessing layers: run as TF ops inside the tf.data graph."""
    fill = AUGMENTATION["fill_mode"]
    zoom = AUGMENTATION["zoom_range"]
    shift_x, shift_y = AUGMENTATION["width_shift_range"], AUGMENTATION["height_shift_range"]
    shear = math.tan(math.radians(AUGMENTATION["shear_range"]))  # degrees -> x offset per row
    stack = [
        layers.RandomRotation(AUGMENTATION["rotation_range"] / 360, fill_mode=fill, seed=seed),
        layers.RandomTranslation(shift_y, shift_x, fill_mode=fill, seed=seed + 1),
        layers.RandomShear(x_factor=shear, y_factor=0.0, fill_mode=fill, seed=seed + 2),
        layers.RandomZoom((-zoom, zoom), (-zoom, zoom), fill_mode=fill, seed=seed + 3),
    ]
    if AUGMENTATION["horizontal_flip"]:
        stack.append(layers.RandomFlip("horizontal", seed=seed + 4))
    model = keras.Sequential(stack, name="augmentation")
    return lambda batch: _apply(model, batch)


def _apply(model, batch):
    """model(batch, training=True), a layer at a time: each preprocessing layer runs as
    TF ops inside tf.data on any Keras backend, a Sequential of them only on TensorFlow
    (train.py --workers runs on JAX)."""
    for layer in model.layers:
        batch = layer(batch, training=True)
    return batch


def _image_data_generator_augmenter():
    """The tutorial's literal ImageDataGenerator, one image at a time in Python."""
    generator = tf.keras.preprocessing.image.ImageDataGenerator(**AUGMENTATION)

    def transform(batch):
        # random_transform draws from NumPy's global RNG, seeded by --seed.
        return np.stack([generator.random_transform(image) for image in batch])

    def augment(batch):
        augmented = tf.numpy_function(transform, [batch], tf.float32)
        return tf.ensure_shape(augmented, batch.shape)

    return augment
