"""Training SmallerVGGNet on a folder-per-class dataset, end to end.

train.py parses arguments and calls `train(settings)`; this module does the
rest: scan and cache the images, split, fit with callbacks, and write the
model, label binarizer, class names, settings and plot only after training
succeeded, each atomically.
"""

import contextlib
import os
import platform
import sys
import time

import numpy as np

from pyimagesearch import dataset as dataset_lib
from pyimagesearch import persistence
from pyimagesearch.cli import import_tensorflow_quietly
from pyimagesearch.plots import plot_history


def train(settings, log=print):
    """Train per `settings` (a dict of train.py's resolved flags); return the history."""
    image_size = settings["image_size"]
    log(f"[INFO] loading images from {settings['dataset']}...")
    folder = dataset_lib.load_image_folder(settings["dataset"], image_size,
                                           settings["cache_dir"], log=log)
    counts = np.bincount(folder.labels, minlength=len(folder.class_names))
    usable = [name for name, count in zip(folder.class_names, counts) if count > 0]
    if len(usable) < 2:
        raise dataset_lib.DatasetError(
            f"need at least two classes with readable images in {settings['dataset']}, "
            f"found {len(usable)} ({', '.join(usable) or 'none'})"
        )
    for name, count in zip(folder.class_names, counts):
        if count == 0:
            log(f"[WARNING] class '{name}' has no readable images; it is left out")
    class_names = usable
    # Re-number labels over the usable classes only, keeping sorted order.
    remap = {folder.class_names.index(name): index for index, name in enumerate(class_names)}
    labels = np.array([remap[label] for label in folder.labels], dtype=np.int64)
    log("[INFO] " + ", ".join(f"{name}: {int(np.sum(labels == i))}"
                              for i, name in enumerate(class_names)))

    # Imported only now, so dataset mistakes are reported without TF's slow start.
    log(f"[INFO] TensorFlow device: {import_tensorflow_quietly()}")
    import keras
    from sklearn.preprocessing import LabelBinarizer

    from pyimagesearch import pipeline
    from pyimagesearch.smallervggnet import SmallerVGGNet

    keras.utils.set_random_seed(settings["seed"])  # one seed: weights, shuffling, augmentation
    train_rows, val_rows = pipeline.stratified_split(labels, settings["val_split"],
                                                     settings["seed"], warn=log)
    if len(val_rows) == 0:
        raise dataset_lib.DatasetError("every class is too small to hold out validation images")
    log(f"[INFO] {len(train_rows)} training and {len(val_rows)} validation images, "
        f"{len(folder.skipped)} file(s) skipped")
    batch_size = settings["batch_size"]
    train_data = pipeline.make_dataset(folder.images, labels, train_rows, len(class_names),
                                       batch_size, True, settings["seed"], settings["augmenter"])
    val_data = pipeline.make_dataset(folder.images, labels, val_rows, len(class_names),
                                     batch_size, False, settings["seed"])

    model = SmallerVGGNet.build(image_size, image_size, 3, len(class_names), rescale=True)
    # The tutorial's Adam(lr, decay=lr/epochs): Keras 3 dropped `decay`; the same
    # per-step schedule is lr / (1 + decay * step), i.e. InverseTimeDecay.
    schedule = keras.optimizers.schedules.InverseTimeDecay(
        settings["lr"], decay_steps=1, decay_rate=settings["lr"] / settings["epochs"])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=schedule),
                  loss="categorical_crossentropy", metrics=["accuracy"])

    # Keep the epoch with the lowest validation loss, not simply the last one;
    # with --patience N also stop once it has not improved for N epochs.
    patience = settings["patience"] or settings["epochs"]
    best = keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience,
                                         restore_best_weights=True, verbose=1)
    PreciseBatchNorm = _precise_batch_norm_callback()
    recalibrate = PreciseBatchNorm(
        pipeline.make_dataset(folder.images, labels, train_rows, len(class_names), batch_size,
                              False, settings["seed"]).take(PreciseBatchNorm.MAX_BATCHES))
    log(f"[INFO] training for up to {settings['epochs']} epochs...")
    started = time.time()
    history = model.fit(train_data, validation_data=val_data, epochs=settings["epochs"],
                        callbacks=[recalibrate, best], shuffle=False, verbose=1 if sys.stdout.isatty() else 2)
    history = history.history
    best_epoch = int(np.argmin(history["val_loss"]))
    log(f"[INFO] trained {len(history['loss'])} epochs in {time.time() - started:.0f} s; "
        f"keeping epoch {best_epoch + 1}: val_loss {history['val_loss'][best_epoch]:.4f}, "
        f"val_accuracy {history['val_accuracy'][best_epoch]:.2%}")

    label_binarizer = LabelBinarizer().fit(class_names)
    description = {
        "class_names": class_names,
        "image_size": image_size,
        "channels": "RGB",
        "input": "uint8 pixels 0-255; the model rescales to [0, 1] itself",
        "settings": settings,
        "epochs_run": len(history["loss"]),
        "best_epoch": best_epoch + 1,
        "best_val_loss": float(history["val_loss"][best_epoch]),
        "best_val_accuracy": float(history["val_accuracy"][best_epoch]),
        "train_images": int(len(train_rows)),
        "val_images": int(len(val_rows)),
        "skipped_files": folder.skipped,
        "versions": _versions(),
    }
    save_outputs(model, label_binarizer, description, history, settings)
    return history


def _precise_batch_norm_callback():
    import keras

    class PreciseBatchNorm(keras.callbacks.Callback):
        """Re-estimate BatchNormalization statistics before each validation.

        BN layers keep moving averages with momentum 0.99, i.e. over the last
        ~100 steps. With a few hundred images an epoch is ~15 steps, so after
        25 epochs those averages still mix statistics of much older weights:
        measured on the default dataset, the model scored 99% on augmented
        training batches but 80% on the same training images in inference
        mode (76% validation). Averaging the batch statistics of up to
        MAX_BATCHES un-augmented training batches with the current weights
        ("precise BN", as in Detectron and timm) fixed it: 100% / 100%.
        Weights are untouched; only the BN moving mean and variance change.
        """

        MAX_BATCHES = 16

        def __init__(self, batches):
            super().__init__()
            self.batches = batches
            self.forward = None

        def on_test_begin(self, logs=None):
            import tensorflow as tf

            layers = [layer for layer in self.model.layers
                      if isinstance(layer, keras.layers.BatchNormalization)]
            if self.forward is None:
                # Traced once with momentum 0, so each call leaves exactly that
                # batch's statistics in the moving variables; training's own
                # step function was traced earlier with the real momentum.
                momenta = [layer.momentum for layer in layers]
                for layer in layers:
                    layer.momentum = 0.0
                self.forward = tf.function(lambda images: self.model(images, training=True))
                self.forward.get_concrete_function(
                    tf.TensorSpec((None,) + tuple(self.model.input_shape[1:]), tf.float32))
                for layer, momentum in zip(layers, momenta):
                    layer.momentum = momentum
            sums = [[0.0, 0.0] for _ in layers]
            count = 0
            for images, _ in self.batches:
                self.forward(images)
                for total, layer in zip(sums, layers):
                    total[0] += layer.moving_mean.numpy()
                    total[1] += layer.moving_variance.numpy()
                count += 1
            for (mean, variance), layer in zip(sums, layers):
                layer.moving_mean.assign(mean / count)
                layer.moving_variance.assign(variance / count)

    return PreciseBatchNorm


def save_outputs(model, label_binarizer, description, history, settings):
    """Write every output to a temporary file first, then rename them together.

    If anything fails (disk full, Ctrl-C) before the renames, the previous
    model, labels and plot are untouched.
    """
    model_path = settings["model"]
    with contextlib.ExitStack() as stack:
        model_tmp = stack.enter_context(persistence.atomic_path(model_path, ".keras"))
        model.save(model_tmp)
        lb_tmp = stack.enter_context(persistence.atomic_path(settings["labelbin"]))
        persistence.save_label_binarizer(label_binarizer, lb_tmp)
        labels_tmp = stack.enter_context(
            persistence.atomic_path(persistence.sidecar_path(model_path, "labels")))
        persistence.write_json_atomic(labels_tmp, description["class_names"])
        info_tmp = stack.enter_context(
            persistence.atomic_path(persistence.sidecar_path(model_path, "settings")))
        persistence.write_json_atomic(info_tmp, description)
        plot_tmp = stack.enter_context(persistence.atomic_path(settings["plot"], ".png"))
        plot_history(history, plot_tmp, best_epoch=description["best_epoch"])
    print(f"[INFO] saved model to {model_path}, labels to {settings['labelbin']}, "
          f"plot to {settings['plot']}")


def _versions():
    import keras
    import sklearn
    import tensorflow as tf

    return {"python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "numpy": np.__version__,
            "scikit-learn": sklearn.__version__}


def default_cache_dir():
    """Decoded-image cache: $POKEDEX_CACHE_DIR, else the user's cache folder."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.environ.get("POKEDEX_CACHE_DIR") or os.path.join(base, "pokedex")
