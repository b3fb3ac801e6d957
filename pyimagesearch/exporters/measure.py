"""What a user gives up with each export: size, load time, latency, agreement, accuracy.

export.py prints these rows after exporting with --dataset, and
bench/bench_export.py prints them for every format. The images come from the
model's own dataset, split again as train.py split it (same data, seed and
shares give the same split, see splitting.make_split): int8 calibrates on
training images and the numbers are taken on the held-out part, the test
part when there is one, else validation (the bundled dataset has no test
part: each class has only two independent groups of frames).
"""

import os
import time
from dataclasses import dataclass

import numpy as np

from pyimagesearch import exporters


@dataclass
class Parts:
    images: np.ndarray  # (N, S, S, 3) uint8 RGB, memory-mapped from the dataset cache
    labels: np.ndarray  # (N,) class index in the model's class order
    train: np.ndarray  # row indices for calibration
    held_out: np.ndarray  # row indices the numbers are taken on
    held_out_name: str  # "test" or "validation"


def check_dataset(description, dataset_path):
    """ExportError unless the dataset's class folders are the model's (cheap: names only)."""
    from pyimagesearch import dataset

    try:
        class_names, _ = dataset.list_class_files(dataset_path)
    except dataset.DatasetError as error:
        raise exporters.ExportError(f"--dataset: {error}") from None
    if class_names != [str(name) for name in description["class_names"]]:
        raise exporters.ExportError(
            f"--dataset {dataset_path}: its classes {class_names} are not the model's "
            f"{list(description['class_names'])}; pass the dataset it was trained on")


def dataset_parts(source, dataset_path, cache_dir=None, log=print):
    """The model's dataset split as train.py split it; ExportError if it is not the model's."""
    from pyimagesearch import dataset, splitting

    check_dataset(source.description, dataset_path)
    try:
        folder = dataset.load_image_folder(
            dataset_path, source.image_size,
            cache_dir or dataset.default_cache_dir(source.model_path), log=log)
        settings = source.description.get("settings") or {}
        split = splitting.make_split(folder, val_split=settings.get("val_split", 0.2),
                                     test_split=settings.get("test_split", 0.15),
                                     seed=settings.get("seed", 42), log=lambda line: None)
    except dataset.DatasetError as error:
        raise exporters.ExportError(f"--dataset: {error}") from None
    held_out, name = (split.test, "test") if len(split.test) else (split.val, "validation")
    return Parts(folder.images, folder.labels, np.asarray(split.train), np.asarray(held_out),
                 name)


def calibration_images(parts, count, seed=0):
    """Up to `count` training images drawn at random, in row order (uint8 (n, S, S, 3))."""
    rows = np.random.default_rng(seed).permutation(parts.train)[:count]
    return np.asarray(parts.images[np.sort(rows)])


@dataclass
class Row:
    name: str  # "onnx", "litert int8", ...
    path: str
    size_bytes: int
    load_s: float = float("nan")
    latency_ms: float = float("nan")  # median of single-image calls
    max_difference: float = float("nan")  # largest |p - p_keras| over images and classes
    accuracy: float = float("nan")
    agreement: float = float("nan")  # share of images whose top class is Keras's
    reference: bool = False  # the Keras model itself


def artifact_size(path):
    """Bytes of a file, or of every file in a folder (SavedModel, .mlpackage)."""
    if not os.path.isdir(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(folder, name))
               for folder, _, names in os.walk(path) for name in names)


def measure(name, path, open_runner, images, labels, keras_probabilities, scale=1.0,
            latency_images=30):
    """A Row for one artifact: `open_runner()` loads it (timed); images are uint8 RGB (N, S, S, 3)
    already in the model's channel order; labels (N,) and Keras's probabilities (N, C) on them."""
    started = time.perf_counter()
    runner = open_runner()
    load_s = time.perf_counter() - started
    probabilities = runner.predict(images, scale=scale) if len(images) else None
    return Row(name, path, artifact_size(path), load_s,
               one_image_latency_ms(runner, images, scale, latency_images),
               *_compare(probabilities, keras_probabilities, labels))


def one_image_latency_ms(runner, images, scale=1.0, count=30):
    """Median milliseconds of `runner.predict` on one image (after one warm-up call)."""
    if len(images) == 0:
        return float("nan")
    runner.predict(images[:1], scale=scale)
    times = []
    for index in range(count):
        image = images[index % len(images)][None]  # (1, S, S, 3)
        started = time.perf_counter()
        runner.predict(image, scale=scale)
        times.append(time.perf_counter() - started)
    return 1000 * float(np.median(times))


def _compare(probabilities, reference, labels):
    if probabilities is None:
        return float("nan"), float("nan"), float("nan")
    return (float(np.abs(probabilities - reference).max()),
            float(np.mean(probabilities.argmax(axis=1) == labels)),
            float(np.mean(probabilities.argmax(axis=1) == reference.argmax(axis=1))))


def format_rows(rows, reference_accuracy=None):
    """The table as Markdown lines (export.py and the bench print it; the README keeps it)."""
    lines = ["| format | size | load | 1 image | max prob diff vs Keras | accuracy | top-1 = Keras |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        lines.append("| " + " | ".join([
            row.name, f"{row.size_bytes / 1e6:.1f} MB", _number(1000 * row.load_s, "{:.0f} ms"),
            _number(row.latency_ms, "{:.1f} ms"),
            "reference" if row.reference else _number(row.max_difference, "{:.1e}"),
            _accuracy(row.accuracy, None if row.reference else reference_accuracy),
            "reference" if row.reference else _number(row.agreement, "{:.1%}")]) + " |")
    return lines


def _number(value, template):
    return "n/a" if value != value else template.format(value)  # NaN: not measured here


def _accuracy(value, reference):
    if value != value:
        return "n/a"
    if reference is None or abs(value - reference) < 5e-4:
        return f"{value:.1%}"
    return f"{value:.1%} ({100 * (value - reference):+.1f} pt)"


def compare_exports(source, parts, written, latency_images=30):
    """Rows for the Keras model and each (format, path, quantize) written, on the held-out images.

    Returns (rows, the Keras row). A Core ML package gets its size only: its
    answers need macOS.
    """
    from pyimagesearch import persistence
    from pyimagesearch.exporters import runtimes

    images = exporters.in_channel_order(parts.images[parts.held_out], source.metadata)  # (N, S, S, 3)
    labels = parts.labels[parts.held_out]
    scale = float(source.metadata["input_scale"])
    keras_probabilities = runtimes.KerasRunner(source.model).predict(images, scale)
    reference = measure("keras (.keras)", source.model_path,
                        lambda: runtimes.KerasRunner(persistence.load_model(source.model_path)),
                        images, labels, keras_probabilities, scale, latency_images)
    reference.reference = True
    rows = [reference]
    for name, path, quantize in written:
        label = f"litert {'float32' if quantize == 'none' else quantize}" \
            if name == "litert" else name
        if name == "coreml":
            rows.append(Row(label, path, artifact_size(path)))
            continue
        rows.append(measure(label, path, lambda path=path: runtimes.open_exported(path),
                            images, labels, keras_probabilities, scale, latency_images))
    return rows, reference

