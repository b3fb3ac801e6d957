"""TensorBoard logs of a training run (`train.py --tensorboard DIR`, then `tensorboard --logdir DIR`).

    DIR/train/        per epoch: epoch_loss, epoch_accuracy, learning_rate, seconds,
                      images_per_second, a histogram of every weight; the model graph;
                      at step 0 a grid of augmented training images beside the same
                      images as read
    DIR/validation/   per epoch: epoch_loss, epoch_accuracy (the same tags as train/, so
                      TensorBoard draws the two curves in one chart); at the end the
                      confusion matrix of the test part, or of validation without one

The step is the epoch number (1-based). DIR holds one run: a fresh run drops
the event files it finds in DIR/train and DIR/validation, and a resumed run
drops only the events after its checkpointed epoch, which an interrupted run
had logged past the checkpoint, so no epoch appears twice.
"""

import glob
import os
import time

import keras
import numpy as np
import tensorflow as tf

from pyimagesearch import persistence

PARTS = ("train", "validation")
GRID_IMAGES = 16  # augmented training images shown at the start


def truncate(log_dir, last_epoch, log=print):
    """Drop the events after step `last_epoch` from DIR/train and DIR/validation (0: all).

    A damaged events file (cut short by a kill or a full disk) keeps its readable
    events up to the damage, with one warning; training goes on in a new file.
    """
    for part in PARTS:
        for path in glob.glob(os.path.join(log_dir, part, "*tfevents*")):
            if last_epoch == 0:
                os.remove(path)
                continue
            events, damaged = _read_events(path)
            if damaged:
                log(f"[WARNING] {path}: damaged events file ({damaged}); kept its "
                    f"{len(events)} readable events, new logs go to a new file")
            kept = [event for event in events if event.step <= last_epoch]
            if len(kept) == len(events) and not damaged:
                continue
            with persistence.atomic_path(path) as temporary:
                with tf.io.TFRecordWriter(temporary) as writer:
                    for event in kept:
                        writer.write(event.SerializeToString())


def _read_events(path):
    """([Event] up to the first damaged record, None or what the damage is)."""
    from google.protobuf.message import DecodeError

    events = []
    records = iter(tf.data.TFRecordDataset(path))
    while True:
        try:
            record = next(records)
        except StopIteration:
            return events, None
        except tf.errors.DataLossError as error:  # truncated, or a CRC mismatch
            return events, "cut short" if "truncated" in str(error) else "a corrupted record"
        try:
            events.append(tf.compat.v1.Event.FromString(record.numpy()))
        except DecodeError as error:
            return events, "an unreadable event"


class TensorBoardLogger(keras.callbacks.Callback):
    """Writes the per-epoch logs; `log_start` and `log_confusion` add the pictures."""

    def __init__(self, log_dir, first_epoch, train_images, log=print):
        super().__init__()
        truncate(log_dir, first_epoch, log)
        self.log_dir, self.train_images = log_dir, train_images
        self.writers = {part: tf.summary.create_file_writer(os.path.join(log_dir, part))
                        for part in PARTS}
        self.epoch_started = None

    def log_start(self, model, originals, augmented):
        """The graph and the image grids (uint8-valued (N, S, S, 3) arrays), at step 0."""
        with self.writers["train"].as_default():
            call = tf.function(lambda images: model(images, training=False))
            spec = tf.TensorSpec((None,) + tuple(model.input_shape[1:]), tf.float32)
            tf.summary.graph(call.get_concrete_function(spec).graph)
            tf.summary.image("training images as read", _grid(originals)[None], step=0)
            tf.summary.image("the same images augmented", _grid(augmented)[None], step=0)
        self.writers["train"].flush()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_started = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        logs, step = logs or {}, epoch + 1
        seconds = time.monotonic() - self.epoch_started
        learning_rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        with self.writers["train"].as_default(step=step):
            for name in ("loss", "accuracy"):
                if name in logs:
                    tf.summary.scalar(f"epoch_{name}", float(logs[name]))
            tf.summary.scalar("learning_rate", learning_rate)
            tf.summary.scalar("seconds", seconds)  # the epoch, validation included
            tf.summary.scalar("images_per_second", self.train_images / seconds)
            for weight in self.model.weights:
                tf.summary.histogram(weight.path, keras.ops.convert_to_numpy(weight))
        with self.writers["validation"].as_default(step=step):
            for name in ("loss", "accuracy"):
                if f"val_{name}" in logs:
                    tf.summary.scalar(f"epoch_{name}", float(logs[f"val_{name}"]))
        for writer in self.writers.values():
            writer.flush()

    def log_confusion(self, png_bytes, part, step):
        """The confusion matrix picture (PNG bytes) of `part` ("test" or "validation")."""
        image = tf.image.decode_png(png_bytes, channels=3)[None]  # (1, H, W, 3)
        with self.writers["validation"].as_default():
            tf.summary.image(f"confusion matrix ({part})", image, step=step)
        self.writers["validation"].flush()

    def close(self):
        for writer in self.writers.values():
            writer.close()


def _grid(images, columns=4):
    """(N, S, S, 3) uint8-valued images -> one (rows*S, columns*S, 3) uint8 picture."""
    images = np.clip(np.asarray(images), 0, 255).astype(np.uint8)
    count, size = len(images), images.shape[1]
    rows = -(-count // columns)
    grid = np.full((rows * size, columns * size, 3), 255, dtype=np.uint8)
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        grid[row * size:(row + 1) * size, column * size:(column + 1) * size] = image
    return grid

