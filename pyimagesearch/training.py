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
from pyimagesearch.litert import export_tflite
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

    from pyimagesearch import callbacks, checkpoints, evaluation, pipeline
    from pyimagesearch.smallervggnet import SmallerVGGNet

    keras.utils.set_random_seed(settings["seed"])  # one seed: weights, shuffling, augmentation
    train_rows, val_rows, test_rows = split_rows(labels, settings, log, class_names)
    log(f"[INFO] {len(train_rows)} training, {len(val_rows)} validation and {len(test_rows)} "
        f"test images, {len(folder.skipped)} file(s) skipped")
    batch_size = settings["batch_size"]
    train_data = pipeline.make_dataset(folder.images, labels, train_rows, len(class_names),
                                       batch_size, True, settings["seed"], settings["augmenter"])
    val_data = pipeline.make_dataset(folder.images, labels, val_rows, len(class_names),
                                     batch_size, False, settings["seed"])

    run_folder = checkpoints.RunFolder(settings["model"])
    state = None if settings.get("restart") else run_folder.load_state()
    if settings.get("resume") and state is None:
        raise dataset_lib.DatasetError(f"--resume: no checkpoint to resume in {run_folder.path}")
    if state:
        run_folder.check_resumable(state, class_names, settings)
        model = run_folder.load_model(state)
        log(f"[INFO] resuming after epoch {state['epoch']} from {run_folder.path} "
            "(use --restart to start over)")
    else:
        run_folder.clear()
        state = checkpoints.new_state(class_names, settings)
        model = SmallerVGGNet.build(image_size, image_size, 3, len(class_names), rescale=True)
        # The tutorial's Adam(lr, decay=lr/epochs): Keras 3 dropped `decay`; the
        # same per-step schedule is lr / (1 + decay * step), i.e. InverseTimeDecay.
        schedule = keras.optimizers.schedules.InverseTimeDecay(
            settings["lr"], decay_steps=1, decay_rate=settings["lr"] / settings["epochs"])
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=schedule),
                      loss="categorical_crossentropy", metrics=["accuracy"])

    # Checkpoint every epoch; keep the epoch with the lowest validation loss,
    # not simply the last one; with --patience N stop after N epochs without one.
    checkpoint = callbacks.EpochCheckpoint(run_folder, state, settings["patience"])
    recalibrate = callbacks.PreciseBatchNorm(
        pipeline.make_dataset(folder.images, labels, train_rows, len(class_names), batch_size,
                              True, settings["seed"], augmenter="none")
        .take(callbacks.PreciseBatchNorm.MAX_BATCHES))  # shuffled, not augmented
    log(f"[INFO] training for up to {settings['epochs']} epochs...")
    started = time.time()
    try:
        if state["epoch"] < settings["epochs"] and not _patience_exhausted(state, settings):
            model.fit(train_data, validation_data=val_data, epochs=settings["epochs"],
                      initial_epoch=state["epoch"], callbacks=[recalibrate, checkpoint],
                      shuffle=False, verbose=1 if sys.stdout.isatty() else 2)
    except KeyboardInterrupt:
        raise Interrupted(state["epoch"], run_folder.path) from None
    checkpoint.restore_best()
    history = state["history"]
    best_epoch = state["best_epoch"] - 1
    log(f"[INFO] trained {len(history['loss'])} epochs ({time.time() - started:.0f} s this run); "
        f"keeping epoch {best_epoch + 1}: val_loss {history['val_loss'][best_epoch]:.4f}, "
        f"val_accuracy {history['val_accuracy'][best_epoch]:.2%}")

    test_metrics = None
    if len(test_rows):
        # Images that neither training nor the choice of epoch ever saw.
        log(f"[INFO] evaluating on {len(test_rows)} held-out test images...")
        read = dataset_lib.row_reader(folder.images)
        probabilities = np.concatenate([
            model.predict_on_batch(read(test_rows[start:start + batch_size]).astype(np.float32))
            for start in range(0, len(test_rows), batch_size)])
        test_metrics = evaluation.write_report(
            probabilities, labels[test_rows], class_names, settings["model"],
            paths=[os.path.join(settings["dataset"], folder.paths[row]) for row in test_rows],
            extra={"split": "test", "test_split": settings["test_split"],
                   "seed": settings["seed"]}, log=log)

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
        "test_images": int(len(test_rows)),
        "test_accuracy": test_metrics["accuracy"] if test_metrics else None,
        "skipped_files": folder.skipped,
        "versions": _versions(),
    }
    save_outputs(model, label_binarizer, description, history, settings)
    run_folder.clear()  # the final model is saved; the checkpoints are no longer needed
    return history


def split_rows(labels, settings, log, class_names=None):
    """Stratified (train, validation, test) row indices, fixed by --seed.

    --test-split and --val-split are shares of the whole dataset: 0.15 and
    0.2 give 65/20/15. The test part is drawn first, so the same seed gives
    the same test images whatever --val-split is.
    """
    split = dataset_lib.stratified_split
    test_share, val_share = settings["test_split"], settings["val_split"]
    rest, test_rows = (split(labels, test_share, settings["seed"], log, class_names)
                       if test_share else (np.arange(len(labels)), np.array([], dtype=np.int64)))
    train_part, val_part = split(labels[rest], val_share / (1 - test_share), settings["seed"] + 1,
                                 log, class_names)
    if len(val_part) == 0:
        raise dataset_lib.DatasetError("every class is too small to hold out validation images")
    return rest[train_part], rest[val_part], test_rows


class Interrupted(Exception):
    """Ctrl-C during training; the last completed epoch is checkpointed."""

    def __init__(self, epochs_done, run_path):
        super().__init__(epochs_done, run_path)
        self.epochs_done, self.run_path = epochs_done, run_path


def _patience_exhausted(state, settings):
    return bool(settings["patience"]) and state["wait"] >= settings["patience"]


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
        # A LiteRT copy lets classify.py answer in ~0.3 s without TensorFlow. The
        # sidecar ties it to this model file (size, mtime survive the rename)
        # and this label file (sha256), so a stale copy is never used.
        tflite_path = f"{model_path}.tflite"
        tflite_tmp = stack.enter_context(persistence.atomic_path(tflite_path, ".tflite"))
        export_tflite(model, tflite_tmp)
        model_stat = os.stat(model_tmp)
        litert_tmp = stack.enter_context(
            persistence.atomic_path(persistence.sidecar_path(model_path, "litert")))
        persistence.write_json_atomic(litert_tmp, {
            "tflite": os.path.basename(tflite_path), "tflite_size": os.path.getsize(tflite_tmp),
            "model_size": model_stat.st_size, "model_mtime_ns": model_stat.st_mtime_ns,
            "labelbin_sha256": persistence.file_sha256(lb_tmp),
            "class_names": description["class_names"], "image_size": description["image_size"]})
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
