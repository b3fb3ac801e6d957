"""Training a network (--arch, SmallerVGGNet by default) on a folder-per-class dataset.

train.py parses arguments and calls `train(settings)`, which runs one step
per function, top to bottom:

    check_outputs   every output path is a writable file name, each its own (before any
                    slow work)
    resolve         the network's own image size and channels unless given, checked
                    against what it can take (architecture.py)
    load_data       scan and cache the images, drop classes with no readable image
    prepare_run     a fresh run (group-aware split, new model) or a resumed one
                    (the split stored by content hash, the checkpointed model)
    fit             model.fit with precise BatchNorm and checkpoints (and, with
                    --tensorboard, TensorBoard logs; with --keep-epochs, every
                    epoch's weights); a transfer network in two phases
    fit_confidence  the confidence head on the best epoch's features: temperature
                    (validation), class means and covariance (training), the
                    unknown threshold (validation; confidence.py)
    evaluate_test   the held-out test split, scored by the best epoch (calibrated)
    score_held_out  the part the run page reports: test, or validation without one
    save_outputs    model, labels, LiteRT copy, descriptions, the split (for
                    evaluate.py --split), plot, test report and the run page
                    (<model>.report.html), written to temporaries and
                    renamed together at the very end, the model last; each
                    carries the run's id, so a reader can refuse a file of
                    another run beside the model (a run killed between renames)
"""

import contextlib
import datetime
import hashlib
import os
import pickle
import platform
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass

import numpy as np

from pyimagesearch import dataset as dataset_lib
from pyimagesearch import architecture, drift, frozen, interrupts, locking, persistence, \
    run_files
from pyimagesearch.cli import import_tensorflow_quietly
from pyimagesearch.litert import export_tflite
from pyimagesearch.plots import plot_history


class OutputPathError(dataset_lib.DatasetError):
    """An output path that cannot be written (a folder, or a folder we cannot write to)."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; nothing was saved."""


class Interrupted(Exception):
    """Ctrl-C during training; the progress so far is checkpointed."""

    def __init__(self, epochs_done, run_path):
        super().__init__(epochs_done, run_path)
        self.epochs_done, self.run_path = epochs_done, run_path


@dataclass
class Data:
    folder: dataset_lib.ImageFolder
    class_names: list  # classes with at least one readable image, sorted
    labels: np.ndarray  # (N,) index into class_names, one per row of folder.images


def train(settings, log=print):
    """Train per `settings` (a dict of train.py's resolved flags); return the history."""
    started = time.monotonic()
    check_outputs(settings)
    architecture.resolve(settings)  # before any image is read: the size decides the cache
    with locking.exclusive(f"{settings['model']}.lock",
                           f"the model {settings['model']} (and its run folder)"):
        remove_stale_temporaries(settings, log)
        data = load_data(settings, log)
        # Imported only now, so dataset mistakes are reported without TF's slow start.
        log(f"[INFO] TensorFlow device: {import_tensorflow_quietly()}")
        import keras

        keras.utils.set_random_seed(settings["seed"])  # one seed: weights, shuffling, augmentation
        run = prepare_run(data, settings, log)
        run.started = started
        try:
            fit(run, data, settings, log)
            run.checkpoint.restore_best(run.model)
            history, best = run.state["history"], run.state["best_epoch"]
            log(f"[INFO] trained {len(history['loss'])} epochs; keeping epoch {best}: "
                f"val_loss {history['val_loss'][best - 1]:.4f}, "
                f"val_accuracy {history['val_accuracy'][best - 1]:.2%}")
            fit_confidence(run, data, settings, log)
            test = evaluate_test(run, data, settings, log)
            held_out = score_held_out(run, data, test, settings)
            save_outputs(run, data, test, settings, log, held_out=held_out)
            if run.tensorboard is not None:
                log_confusion(run, data, held_out)
        except KeyboardInterrupt:
            # Keep what was done: the weights as they are now (an interrupted
            # epoch runs again in full on resume) and the best epoch so far.
            if run.checkpoint is not None:  # None: stopped before fit() built it
                with interrupts.deferred():
                    run.checkpoint.save(run.model)
            raise Interrupted(run.state["epoch"], run.folder.path) from None
        finally:
            if run.tensorboard is not None:
                run.tensorboard.close()
        run.folder.clear()  # the final model is saved; the checkpoints are no longer needed
    return run.state["history"]


def output_paths(settings):
    """{what: path} of every file a run writes (and folder it fills), the flags' first."""
    from pyimagesearch import checkpoints, evaluation

    model = settings["model"]
    derived = {"LiteRT copy": f"{model}.tflite", "run page": f"{model}.report.html",
               "split": run_files.split_path(model),
               "class list": persistence.sidecar_path(model, "labels"),
               "description": persistence.sidecar_path(model, "settings"),
               **{f"test {kind}": path for kind, path in evaluation.output_paths(model).items()},
               "lock": f"{model}.lock", "run folder": checkpoints.RunFolder(model).path,
               "kept epochs folder": run_files.epochs_folder(model)}
    return {"--model": model, "--labelbin": settings["labelbin"], "--plot": settings["plot"],
            **{f"the model's {name} {path}": path for name, path in derived.items()}}


def check_outputs(settings):
    """Refuse output paths that are folders, cannot be written or are one file, before any slow work."""
    for flag, key in (("--model", "model"), ("--labelbin", "labelbin"), ("--plot", "plot")):
        path = settings[key]
        if os.path.isdir(path):
            raise OutputPathError(f"{flag} {path} is a folder; give a file name, "
                                  f"e.g. {os.path.join(path, os.path.basename(settings[key]) or 'x')}")
        folder = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(folder, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass  # really create a file: permission bits, read-only mounts, quotas
        except OSError as error:
            raise OutputPathError(f"{flag} {path}: cannot write in {folder} "
                                  f"({error.strerror or error})") from None
    # One file for two outputs: the later write replaces the earlier (the label
    # pickle over the model), and the run still exits 0.
    outputs = output_paths(settings)
    clash = persistence.first_clash(outputs)
    if clash is not None:
        (flag, path), (other, other_path) = clash
        other = f"{other} {other_path}" if other.startswith("--") else other
        raise OutputPathError(f"{flag} {path} and {other} are one file; give each output "
                              "a file of its own")
    run_folder = os.path.realpath(f"{settings['model']}.run") + os.sep
    for flag in ("--labelbin", "--plot"):
        if os.path.realpath(settings[flag[2:]]).startswith(run_folder):
            raise OutputPathError(f"{flag} {settings[flag[2:]]} is inside the model's run "
                                  f"folder {run_folder}, which training removes at the end; "
                                  "give a file outside it")


def remove_stale_temporaries(settings, log):
    """Remove the temporary files a killed run of this model left (a model-sized one among them)."""
    folders = [f"{settings['model']}.run", run_files.epochs_folder(settings["model"])]
    removed = persistence.remove_stale_temporaries(output_paths(settings).values(), folders)
    if removed:
        log(f"[INFO] removed {len(removed)} temporary file(s) left by a run that was killed: "
            + ", ".join(removed[:3]) + (", ..." if len(removed) > 3 else ""))


def load_data(settings, log):
    """Scan and cache the dataset; keep the classes with at least one readable image."""
    log(f"[INFO] loading images from {settings['dataset']}...")
    folder = read_shards(settings, log) if os.path.isfile(
        os.path.join(settings["dataset"], "shards.json")) else \
        dataset_lib.load_image_folder(settings["dataset"], settings["image_size"],
                                      settings["cache_dir"], log=log)
    counts = np.bincount(folder.labels, minlength=len(folder.class_names))
    usable = [name for name, count in zip(folder.class_names, counts) if count > 0]
    if len(usable) < 2:
        raise dataset_lib.DatasetError(
            f"need at least two classes with readable images in {settings['dataset']}, "
            f"found {len(usable)} ({', '.join(usable) or 'none'})")
    for name, count in zip(folder.class_names, counts):
        if count == 0:
            log(f"[WARNING] class '{name}' has no readable images; it is left out")
    # Re-number labels over the usable classes only, keeping sorted order.
    remap = {folder.class_names.index(name): index for index, name in enumerate(usable)}
    labels = np.array([remap[label] for label in folder.labels], dtype=np.int64)
    counts = np.bincount(labels, minlength=len(usable))
    if len(usable) <= 20:
        log("[INFO] " + ", ".join(f"{name}: {count}" for name, count in zip(usable, counts)))
    else:  # 649 names and counts make one unreadable line
        smallest = ", ".join(f"{usable[i]}: {counts[i]}" for i in np.argsort(counts)[:3])
        log(f"[INFO] {len(usable)} classes, {counts.min()} to {counts.max()} images each "
            f"(median {int(np.median(counts))}); the smallest: {smallest}")
    return Data(folder, usable, labels)


def read_shards(settings, log):
    """A folder prepare.py wrote (shards.json inside): its images as the cache's ImageFolder."""
    from pyimagesearch import shards

    index = shards.read_index(settings["dataset"])
    if index.image_size != settings["image_size"]:
        raise dataset_lib.DatasetError(
            f"{settings['dataset']} holds {index.image_size} px shards but training is at "
            f"{settings['image_size']} px: pass --image-size {index.image_size}, or run "
            f"prepare.py again with --image-size {settings['image_size']}")
    log(f"[INFO] reading {index.count} images from {len(index.shards)} shard file(s)")
    return shards.as_image_folder(settings["dataset"], settings["cache_dir"])


@dataclass
class Run:
    folder: object  # checkpoints.RunFolder
    state: dict  # epoch, history, best epoch, split by content hash (checkpoints.py)
    model: object  # compiled keras.Model
    split: object  # splitting.Split: train/val/test rows
    checkpoint: object = None  # callbacks.EpochCheckpoint, set by fit()
    tensorboard: object = None  # tensorboard_logs.TensorBoardLogger with --tensorboard
    head: object = None  # confidence.Head, set by fit_confidence()
    features: object = None  # rows -> (penultimate, distance) features, set by fit_confidence()
    pooled: object = None  # (N, F) frozen backbone features of every row (frozen.py)
    calibration: dict = None  # ECE before/after and reliability bins on the held-out part
    started: float = 0.0  # time.monotonic() when train() began


def prepare_run(data, settings, log):
    """A resumed run (stored split and checkpointed model) or a fresh one."""
    from pyimagesearch import checkpoints, splitting

    run_folder = checkpoints.RunFolder(settings["model"])
    state = None if settings.get("restart") else run_folder.load_state()
    if settings.get("resume") and state is None:
        raise dataset_lib.DatasetError(f"--resume: no checkpoint to resume in {run_folder.path}")
    if state and state.get("split"):
        run_folder.check_resumable(state, data.class_names, settings)
        # Split by content hash as stored: former test images never move into
        # training; new files go to training only.
        split = splitting.reuse_split(data.folder, state["split"], log=log)
        model = run_folder.load_model(state)
        state.setdefault("run_id", uuid.uuid4().hex)  # a checkpoint of an older train.py
        log(f"[INFO] resuming after epoch {state['epoch']} from {run_folder.path} "
            "(use --restart to start over)")
    else:
        run_folder.clear()
        # Abandoned runs' epochs go; the saved model's stay until a new model replaces it.
        run_files.remove_epochs(settings["model"],
                                keep={run_files.model_run_id(settings["model"]), None})
        split = splitting.make_split(data.folder, val_split=settings["val_split"],
                                     test_split=settings["test_split"], seed=settings["seed"],
                                     log=log)
        state = checkpoints.new_state(data.class_names, settings, split.to_state())
        # Every output of the run carries it, as do its kept epochs: readers refuse
        # a file of another run beside the model.
        state["run_id"] = uuid.uuid4().hex
        state.update(architecture.new_state_fields(settings))
        model = build_model(data, settings)
    log(f"[INFO] {len(split.train)} training, {len(split.val)} validation and "
        f"{len(split.test)} test images, {len(data.folder.skipped)} file(s) skipped")
    return Run(run_folder, state, model, split)


def build_model(data, settings):
    """The network of settings["arch"] (SmallerVGGNet by default), compiled (architecture.py)."""
    return architecture.build_model(len(data.class_names), architecture.resolve(dict(settings)))


def setting(settings, key):
    """settings[key], or what runs made before the flag existed did (checkpoints.OLDER_DEFAULTS)."""
    from pyimagesearch.checkpoints import OLDER_DEFAULTS

    return settings.get(key, OLDER_DEFAULTS.get(key))


# --lr-schedule plateau: x0.1 after 2 epochs without a 1% lower val_loss, down to
# lr/100; with --patience 5 a run stops 5 such epochs after its last improvement.
PLATEAU = {"patience": 2, "factor": 0.1, "min_lr_fraction": 0.01}


def fit(run, data, settings, log, worker=None):
    """model.fit from the run's last epoch to settings['epochs'] (or patience).

    With train.py --workers N, N processes do this (distributed.py); `worker` is
    this process's place among them: its share of the data and what it writes.
    """
    from pyimagesearch import callbacks, pipeline

    if worker is None and settings.get("workers", 1) > 1:
        from pyimagesearch import distributed
        return distributed.fit_in_workers(run, data, settings, log)
    images, labels, classes = data.folder.images, data.labels, len(data.class_names)
    batch_size, seed = settings["batch_size"], settings["seed"]
    class_weights = None
    if setting(settings, "class_weight") == "balanced":
        class_weights = pipeline.balanced_class_weights(labels[run.split.train], classes)
        log("[INFO] class weights (balanced): " + ", ".join(
            f"{name} {weight:.2f}" for name, weight in zip(data.class_names, class_weights)))
    if worker is None:  # made when an image phase starts (frozen.py's needs none)
        def train_data():
            return pipeline.make_dataset(images, labels, run.split.train, classes, batch_size,
                                         True, seed, settings["augmenter"],
                                         color=setting(settings, "color_augment"),
                                         class_weights=class_weights)

        def val_data():
            return pipeline.make_dataset(images, labels, run.split.val, classes, batch_size,
                                         False, seed)
    else:
        datasets = worker.datasets(data, run.split, class_weights)
        train_data, val_data = (lambda: datasets[0]), (lambda: datasets[1])
    plateau = None
    if setting(settings, "lr_schedule") == "plateau":
        plateau = {"patience": PLATEAU["patience"], "factor": PLATEAU["factor"],
                   "min_lr": settings["lr"] * PLATEAU["min_lr_fraction"]}
        if run.state.get("lr") is not None:  # resumed: the rate the plateau rule left
            run.model.optimizer.learning_rate.assign(run.state["lr"])
    # Keep the epoch with the lowest validation loss, not simply the last one;
    # with --patience N stop after N epochs without one.
    run.checkpoint = callbacks.EpochCheckpoint(worker.run_folder(run.folder) if worker else
                                               run.folder, run.state, settings["patience"],
                                               settings.get("checkpoint_every", 120.0),
                                               plateau=plateau, weights_model=run.model)
    recalibrate = (worker.PreciseBatchNorm if worker else callbacks.PreciseBatchNorm)(
        pipeline.make_dataset(images, labels, run.split.train, classes, batch_size, True, seed,
                              augmenter="none")
        .take(callbacks.PreciseBatchNorm.MAX_BATCHES))  # shuffled, not augmented
    state = run.state
    if settings.get("tensorboard"):
        run.tensorboard = start_tensorboard(run, data, settings, log)
    extra = [] if run.tensorboard is None else [run.tensorboard]
    if settings.get("keep_epochs"):
        extra.append(callbacks.KeepEpochs(settings["model"], run.state["run_id"],
                                          weights_model=run.model))
    options = {"verbose": 1 if sys.stdout.isatty() else 2}
    if worker:  # steps per epoch, and process 0 alone logs and writes
        extra, options = worker.callbacks(extra), worker.fit_options(run.split)
    trained = False
    for phase, last_epoch in architecture.phases(settings, state):
        if phase > state.get("phase", 1):
            architecture.start_fine_tuning(run.model, state, settings, run.checkpoint, log)
            last_epoch = architecture.phase_two_end(settings, state)
        patience_over = bool(settings["patience"]) and state["wait"] >= settings["patience"]
        if state["epoch"] >= last_epoch or patience_over:
            continue  # this phase is done (a resumed run)
        if phase == 1 and worker is None and frozen.uses_cached_features(settings):
            # The head alone on the frozen backbone's cached features (frozen.py); the
            # callbacks keep and checkpoint run.model, whose layers the head shares.
            frozen.fit_head(run, data, settings, log, last_epoch, [run.checkpoint] + extra,
                            class_weights, options)
        else:
            log(f"[INFO] training for up to {last_epoch} epochs...")
            run.model.fit(train_data(), validation_data=val_data(), epochs=last_epoch,
                          initial_epoch=state["epoch"],
                          callbacks=[recalibrate, run.checkpoint] + extra, shuffle=False,
                          **options)
        trained = True
        check_diverged(run, settings)
    if not trained:
        log(f"[INFO] the checkpoint already holds the last epoch ({state['epoch']}); "
            "writing the outputs from its best epoch")


def check_diverged(run, settings):
    """Raise TrainingDiverged if the loss became NaN/inf or no epoch had a finite val_loss."""
    state = run.state
    if run.checkpoint.diverged:
        raise TrainingDiverged(
            f"the loss became NaN or infinite in epoch {run.checkpoint.diverged}; the "
            f"learning rate is probably too high (--lr {settings['lr']:g}): try "
            f"--restart --lr {settings['lr'] / 10:g}. Nothing was saved")
    if not state["best_epoch"]:
        raise TrainingDiverged("no epoch completed with a finite validation loss")


def start_tensorboard(run, data, settings, log=print):
    """A TensorBoard logger for this run; a fresh run also logs the graph and augmented images."""
    from pyimagesearch import pipeline, tensorboard_logs

    logger = tensorboard_logs.TensorBoardLogger(settings["tensorboard"], run.state["epoch"],
                                                len(run.split.train), log)
    if run.state["epoch"] == 0:  # a resumed run logged these already
        # Spread over the training rows (they are in class order), so every class shows.
        rows = np.asarray(run.split.train)
        sample = rows[np.unique(np.linspace(0, len(rows) - 1, tensorboard_logs.GRID_IMAGES)
                                .astype(np.int64))]
        originals = dataset_lib.row_reader(data.folder.images)(sample).astype(np.float32)
        augment = pipeline.make_augmenter(settings["augmenter"], settings["seed"],
                                          color=setting(settings, "color_augment"))
        augmented = np.asarray(augment(originals))
        logger.log_start(run.model, originals, augmented)
    return logger


# Class means, one covariance, a temperature and a 95% quantile need no more images
# than this per part; a sample keeps memory flat however large the dataset (the
# penultimate features alone are 4 KiB an image for SmallerVGGNet).
MAX_CONFIDENCE_ROWS = 10_000


def fit_confidence(run, data, settings, log):
    """Fit the confidence head (confidence.Head) on the kept epoch's features (features.py).

    Temperature and the unknown threshold come from the validation split; the
    class means and shared covariance from the (un-augmented) training split;
    each from at most MAX_CONFIDENCE_ROWS images of its part, drawn with the seed.
    """
    from pyimagesearch import confidence
    from pyimagesearch.features import FeatureExtractor

    rng = np.random.default_rng(settings["seed"])
    train_rows, val_rows = (sample_rows(rows, MAX_CONFIDENCE_ROWS, rng)
                            for rows in (run.split.train, run.split.val))
    if frozen.uses_cached_features(settings) and run.state.get("phase", 1) == 1:
        # The backbone never changed: its cached pooled features are the penultimate
        # features (dropout is the identity at inference) and the distance features
        # (features.py) alike, so no image goes through the network again.
        pooled = frozen.pooled_features(run, data, settings, log)
        kernel, bias = run.model.get_layer("logits").get_weights()
        run.features = lambda rows: (pooled[np.asarray(rows)], pooled[np.asarray(rows)])
        train = (None, pooled[train_rows])
        val = (pooled[val_rows] @ kernel + bias, pooled[val_rows])
    else:
        extract = FeatureExtractor(run.model)
        kernel, bias = extract.kernel, extract.bias
        run.features = lambda rows: features_of(extract, data, rows, settings["batch_size"])
        train = features_of(extract, data, train_rows, settings["batch_size"], keep="distance")
        val = features_of(extract, data, val_rows, settings["batch_size"], keep="logits")
    run.head = confidence.Head.fit(kernel, bias, train, data.labels[train_rows],
                                   val, data.labels[val_rows], val_logits=True)
    if not run.head.answers_unknown:
        log(f"[INFO] confidence: only {len(val_rows)} validation images (fewer than "
            f"{confidence.MIN_VALIDATION_IMAGES}): no temperature scaling and no 'unknown' "
            "answers; more images or a larger --val-split enable them")
        return
    log(f"[INFO] confidence: temperature {run.head.temperature:.2f} (validation); an image is "
        f"unknown above a feature distance of {run.head.threshold:.1f}, which "
        f"{run.head.false_unknown_rate:.0%} of validation images exceed")


def sample_rows(rows, limit, rng):
    """At most `limit` of `rows`, drawn without replacement, in cache order (sequential reads)."""
    rows = np.asarray(rows)
    return rows if len(rows) <= limit else np.sort(rng.choice(rows, limit, replace=False))


def features_of(extract, data, rows, batch, keep="both"):
    """(penultimate, distance) features (features.py) of rows of the image cache, a batch at a time.

    keep="distance" puts None in the penultimate's place, keep="logits" the logits
    (N, C): both spare the (N, D) penultimate features (4 KiB an image).
    """
    read = dataset_lib.row_reader(data.folder.images)
    rows = np.asarray(rows)
    firsts, distances = [], []
    for start in range(0, max(len(rows), 1), batch):
        chunk = rows[start:start + batch]
        penultimate, distance = extract(read(chunk) if len(chunk) else
                                        np.zeros((0, *data.folder.images.shape[1:]), np.uint8))
        if keep == "logits":
            penultimate = penultimate @ extract.kernel + extract.bias  # (B, C)
        firsts.append(None if keep == "distance" else penultimate)
        distances.append(distance)
    return (None if keep == "distance" else np.concatenate(firsts)), np.concatenate(distances)


def evaluate_test(run, data, settings, log):
    """Calibrated probabilities of the best epoch on the test split, or None without one."""
    rows = run.split.test
    if not len(rows):
        return None
    # Images that neither training nor the choice of epoch ever saw.
    log(f"[INFO] evaluating on {len(rows)} held-out test images...")
    return held_out_probabilities(run, data, rows, "test")


def held_out_probabilities(run, data, rows, part):
    """Calibrated probabilities (len(rows), C); sets run.calibration for this part.

    A thousand images at a time, so only probabilities (N, C), never all the
    features, are held for a large part.
    """
    from pyimagesearch import confidence

    rows = np.asarray(rows)
    labels = data.labels[rows]
    before, after = [np.zeros((0, len(data.class_names)))], [np.zeros((0, len(data.class_names)))]
    unknown = [np.zeros(0, bool)]
    for start in range(0, len(rows), 1000):
        features = run.features(rows[start:start + 1000])
        before.append(run.head.probabilities(features[0], calibrated=False))
        after.append(run.head.probabilities(features[0]))
        unknown.append(run.head.answer(*features)[2])
    before, after, unknown = (np.concatenate(parts) for parts in (before, after, unknown))
    run.calibration = {
        "part": part, "temperature": run.head.temperature,
        "ece_before": confidence.expected_calibration_error(before, labels),
        "ece_after": confidence.expected_calibration_error(after, labels),
        "bins_before": confidence.reliability_bins(before, labels),
        "bins_after": confidence.reliability_bins(after, labels),
        "unknown_threshold": run.head.threshold if run.head.answers_unknown else None,
        "false_unknown_rate_target": run.head.false_unknown_rate,
        "called_unknown": float(np.mean(unknown)) if len(rows) else 0.0,
    }
    return after


def score_held_out(run, data, test_probabilities, settings):
    """The part the run page and TensorBoard report: {"part", "rows", "probabilities"}.

    The test part when there is one; else validation (which also chose the
    kept epoch, so its numbers lean optimistic; the page says so).
    """
    if test_probabilities is not None:
        return {"part": "test", "rows": run.split.test, "probabilities": test_probabilities}
    rows = run.split.val
    return {"part": "validation", "rows": rows,
            "probabilities": held_out_probabilities(run, data, rows, "validation")}


def calibration_summary(calibration):
    """What metrics.json and the description record (the bins stay on the page and in metrics)."""
    return {key: (round(value, 4) if isinstance(value, float) else value)
            for key, value in calibration.items() if not key.startswith("bins_")}


def log_confusion(run, data, held_out):
    """The held-out part's confusion matrix as a TensorBoard image at the last epoch."""
    from sklearn.metrics import confusion_matrix

    from pyimagesearch import evaluation, plots

    true = data.labels[held_out["rows"]]
    matrix = confusion_matrix(true, held_out["probabilities"].argmax(axis=1),
                              labels=range(len(data.class_names)))
    png = plots.figure_png(evaluation.plot_confusion_matrix, matrix, data.class_names,
                                      title=f"{held_out['part']}, kept epoch "
                                            f"{run.state['best_epoch']}")
    run.tensorboard.log_confusion(png, held_out["part"], run.state["epoch"])


def describe(run, data, settings, labelbin_bytes):
    """Everything a user of the model needs to know, stored inside it and beside it."""
    history, best = run.state["history"], run.state["best_epoch"]
    return {
        "format": "pokedex",
        "run_id": run.state["run_id"],
        "trained_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "architecture": architecture.arch(settings),
        "class_names": data.class_names,
        "image_size": settings["image_size"],
        "channels": "RGB",  # what the model takes; input_channels: what the network sees
        "input_channels": setting(settings, "channels"),
        "channel_order": "RGB",
        "input_scale": 1.0,
        "input": "uint8 pixels 0-255; the model rescales to [0, 1] itself",
        "labelbin_sha256": hashlib.sha256(labelbin_bytes).hexdigest(),
        "settings": settings,
        "epochs_run": len(history["loss"]),
        "phase_one_epochs": run.state.get("phase_one_epochs"),  # two-phase networks
        "kept_epochs": run_files.kept_epochs(settings["model"], run.state["run_id"]),
        "best_epoch": best,
        "best_val_loss": float(history["val_loss"][best - 1]),
        "best_val_accuracy": float(history["val_accuracy"][best - 1]),
        "train_images": int(len(run.split.train)),
        "val_images": int(len(run.split.val)),
        "test_images": int(len(run.split.test)),
        "split": {"groups": int(run.split.num_groups), "merged": int(run.split.merged),
                  "new_images_to_training": int(run.split.new_rows),
                  "removed_since_split": int(run.split.removed)},
        "test_accuracy": None,
        "confidence": {**run.head.summary(), **calibration_summary(run.calibration)},
        # Class list, files and usable images per class, a hash of the content
        # hashes: classify.py and the server warn when the folder moves on.
        "data_fingerprint": drift.fingerprint(settings["dataset"], data.class_names,
                                              data.labels, data.folder.hashes),
        "skipped_files": data.folder.skipped,
        "versions": _versions(),
    }


def split_note(split):
    """One line for the test report: how the split was made, and what changed since."""
    note = (f"split by group: {split.num_groups} groups ({split.merged} merged from duplicates "
            f"and near duplicates); no test image has a twin in training")
    if split.new_rows or split.removed:
        note += (f"; since the split was made, {split.new_rows} new image(s) went to training "
                 f"(or followed a held-out twin) and {split.removed} were removed")
    return note


def save_outputs(run, data, test_probabilities, settings, log, held_out=None):
    """Write every output to a temporary file, then rename them together at the end.

    A failure anywhere (disk full, an exception, Ctrl-C: held back until the
    renames are done) before the renames leaves the previous set whole.
    """
    from sklearn.preprocessing import LabelBinarizer

    from pyimagesearch import confidence, evaluation
    from pyimagesearch.features import feature_model

    model_path = settings["model"]
    labelbin_bytes = pickle.dumps(LabelBinarizer().fit(data.class_names))
    description = describe(run, data, settings, labelbin_bytes)
    held_out = held_out or score_held_out(run, data, test_probabilities, settings)
    metrics = None
    run_id = description["run_id"]
    with interrupts.deferred(), contextlib.ExitStack() as stack:
        def temporary(path, suffix=""):
            return stack.enter_context(persistence.atomic_path(path, suffix))

        # Renamed in the reverse order: the model, entered first, is renamed last.
        # Until it is, readers see the previous model, and the files of this run
        # already beside it carry another run id, which they refuse (a kill here).
        model_file = temporary(model_path, ".keras")
        if test_probabilities is not None:
            report_files = {kind: temporary(path, os.path.splitext(path)[1]) for kind, path in
                            evaluation.output_paths(model_path).items()}
            rows = run.split.test
            metrics = evaluation.write_report(
                test_probabilities, data.labels[rows], data.class_names, model_path,
                paths=[os.path.join(settings["dataset"], data.folder.paths[row]) for row in rows],
                extra={"split": "test", "test_split": settings["test_split"],
                       "seed": settings["seed"], "split_groups": description["split"],
                       "run_id": run_id,
                       "calibration": {**calibration_summary(run.calibration),
                                       "bins_before": run.calibration["bins_before"],
                                       "bins_after": run.calibration["bins_after"]}},
                log=log, output_files=report_files,
                notes=[split_note(run.split), f"run id {run_id} (the model's)"])
            for kind in ("confusion.png", "worst.png"):
                tag_png(report_files[kind], run_id)
            description["test_accuracy"] = metrics["accuracy"]
        persistence.save_model(run.model, model_file, description)
        confidence.embed_head(model_file, run.head)  # read back by inference.Classifier
        with open(temporary(settings["labelbin"]), "wb") as handle:
            handle.write(labelbin_bytes)  # tied to the model by its sha256 in the description
        # A LiteRT copy lets classify.py answer in ~0.3 s without TensorFlow; the
        # run id inside both files ties it to this model.
        tflite_path = f"{model_path}.tflite"
        essentials = {key: description[key] for key in (
            "format", "run_id", "class_names", "image_size", "channel_order", "input_scale",
            "labelbin_sha256")}
        essentials["outputs"] = ["probabilities (uncalibrated)", "penultimate features",
                                 "pooled feature map (conv networks)"]
        # Probabilities, then features: the features let classify.py apply
        # the model's confidence head (temperature, unknown) without TensorFlow.
        export_tflite(feature_model(run.model), temporary(tflite_path, ".tflite"),
                      metadata=essentials)
        persistence.write_json_atomic(
            temporary(persistence.sidecar_path(model_path, "labels")), data.class_names)
        persistence.write_json_atomic(
            temporary(persistence.sidecar_path(model_path, "settings")), description)
        persistence.write_json_atomic(temporary(run_files.split_path(model_path)),
                                      run_files.split_record(settings["dataset"],
                                                             run.split.to_state(), run_id))
        plot_path = temporary(settings["plot"], ".png")
        plot_history(run.state["history"], plot_path, best_epoch=description["best_epoch"])
        tag_png(plot_path, run_id)
        with open(plot_path, "rb") as handle:
            plot_png = handle.read()
        page = run_page(run, data, settings, description, held_out, metrics, plot_png)
        with open(temporary(f"{model_path}.report.html", ".html"), "w", encoding="utf-8") as handle:
            handle.write(page)
    # The model is replaced: the previous one's kept epochs go (this run's stay).
    run_files.remove_epochs(model_path, keep={run_id})
    log(f"[INFO] saved model to {model_path}, labels to {settings['labelbin']}, "
        f"plot to {settings['plot']}, run page to {model_path}.report.html")
    if metrics is not None:
        log("[INFO] wrote the test report: "
            + ", ".join(evaluation.output_paths(model_path).values()))
    return description


def tag_png(path, run_id):
    """Put the run id in a PNG's text chunks ("pokedex-run-id"); the pixels stay as they are."""
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("pokedex-run-id", run_id)
    with Image.open(path) as image:
        image.load()
    image.save(path, format="PNG", pnginfo=info)


def run_page(run, data, settings, description, held_out, metrics, plot_png):
    """The HTML of <model>.report.html: data, curves, results on the held-out part, usage."""
    from pyimagesearch import report

    rows = held_out["rows"]
    if metrics is None:  # no test part: the validation images, scored the same way
        metrics = report.quiet_metrics(
            held_out["probabilities"], data.labels[rows], data.class_names,
            [os.path.join(settings["dataset"], data.folder.paths[row]) for row in rows])
    counts = report.class_counts(data.class_names, data.labels, {
        "train": run.split.train, "validation": run.split.val, "test": run.split.test})
    # The model takes RGB 0-255 as float, as the training pipeline feeds it.
    results = report.results_context(metrics, held_out["part"], model=run.model,
                                     to_inputs=lambda images: images.astype(np.float32),
                                     image_size=settings["image_size"])
    usage = report.usage(time.monotonic() - run.started)
    return report.training_page(description, run.state["history"], counts, results, usage,
                                plot_png, calibration=report.calibration_context(run.calibration))


def _versions():
    import keras
    import sklearn
    import tensorflow as tf

    return {"python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "numpy": np.__version__,
            "scikit-learn": sklearn.__version__}

