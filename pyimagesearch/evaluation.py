"""Honest numbers for a trained classifier: per-class report, confusion matrix, worst mistakes.

`write_report` is called by train.py (on the held-out test split) and by
evaluate.py (on any folder-per-class dataset). It needs only probabilities and
true labels, never the model, so nothing here imports TensorFlow.

Files written, for an output prefix P (train.py and evaluate.py use the model
path, or the model path plus `.eval-<dataset>`):

    P.report.txt      scikit-learn classification_report + accuracy, top-k
    P.metrics.json    the same numbers, the confusion matrix, the worst mistakes
    P.confusion.png   confusion matrix: counts, colours normalised per true class (above
                      MAX_MATRIX_CLASSES classes: a chart of the largest confusions instead)
    P.worst.png       the most confident wrong predictions, as thumbnails

A prefix that ends with a path separator (`runs/test/`) or names an existing
folder writes `report.txt`, `metrics.json`, ... inside it.
"""

import os

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (backend must be chosen first)

from pyimagesearch import persistence  # noqa: E402
from pyimagesearch.cli import printable  # noqa: E402
from pyimagesearch.imageio import UnreadableImageError, open_rgb  # noqa: E402

MIN_TRUSTED_SUPPORT = 20  # fewer test images than this: a class's numbers are noise
MAX_WORST = 16  # thumbnails on the worst-misclassified sheet
MAX_MATRIX_CLASSES = 40  # beyond this a C x C picture is unreadable: list confusions instead
MANY_CLASSES_CONFUSIONS = 30  # confusions charted (and listed in report.txt) above that
REPORT_FILES = ("report.txt", "metrics.json", "confusion.png", "worst.png")


def output_paths(output_prefix):
    """{'report.txt': path, ...} for the files `write_report` writes."""
    prefix = os.fspath(output_prefix)
    if prefix.endswith(os.sep) or os.path.isdir(prefix):
        return {kind: os.path.join(prefix, kind) for kind in REPORT_FILES}
    return {kind: f"{prefix}.{kind}" for kind in REPORT_FILES}


def write_report(probabilities, true_labels, class_names, output_prefix, paths=None,
                 top_k=3, extra=None, log=print, output_files=None, notes=()):
    """Print and save the evaluation of `probabilities` against `true_labels`.

    The numbers come from `compute_metrics` (same arguments); this adds the files.

    probabilities: (N, C) model outputs, one row per image, columns in the
        order of `class_names` (C = len(class_names)).
    true_labels: (N,) integer index into `class_names` of each image's class.
    output_prefix: where the four files go (see the module docstring).
    paths: optional N image paths; with them the worst-misclassified sheet
        shows thumbnails, without them it lists the mistakes by index.
    top_k: also report top-k accuracy, k = min(top_k, C).
    extra: optional dict stored in metrics.json as well (model, dataset, ...).
    log: where the report text and notes go (print by default).
    output_files: optional {kind: path} for some or all of REPORT_FILES,
        overriding the paths derived from `output_prefix` (train.py writes
        temporaries and renames them together with the model).
    notes: extra lines for the end of report.txt (train.py: how the split was made).

    Classes absent from `true_labels` are left out of the report's rows (they
    still count as predictions). Returns the metrics dict (as in
    metrics.json) with a "files" entry mapping each kind to its path.
    """
    unknown = set(output_files or {}) - set(REPORT_FILES)
    if unknown:
        raise ValueError(f"output_files: unknown kinds {sorted(unknown)} "
                         f"(expected some of {', '.join(REPORT_FILES)})")
    metrics, text = compute_metrics(probabilities, true_labels, class_names, paths=paths,
                                    top_k=top_k, notes=notes)
    if extra:
        metrics.update(extra)

    files = output_paths(output_prefix)
    files.update({kind: os.fspath(path) for kind, path in (output_files or {}).items()})
    log(text.rstrip("\n"))
    persistence.write_bytes_atomic(files["report.txt"], text.encode())
    persistence.write_json_atomic(files["metrics.json"], metrics)
    title = f"{metrics['num_images']} images, accuracy {metrics['accuracy']:.1%}"
    with persistence.atomic_path(files["confusion.png"], ".png") as temporary:
        plot_confusion_matrix(np.asarray(metrics["confusion_matrix"]), metrics["class_names"],
                              temporary, title=title)
    with persistence.atomic_path(files["worst.png"], ".png") as temporary:
        plot_worst(metrics["worst_misclassified"], temporary)
    announced = [path for kind, path in files.items() if kind not in (output_files or {})]
    if announced:  # a caller that passed temporaries names the final files once renamed
        log(f"[INFO] wrote {', '.join(announced)}")
    return dict(metrics, files=files)


def compute_metrics(probabilities, true_labels, class_names, paths=None, top_k=3, notes=()):
    """The numbers of `write_report`, without writing anything: (metrics dict, report text)."""
    from sklearn.metrics import (classification_report, confusion_matrix,
                                 precision_recall_fscore_support)

    probabilities = np.asarray(probabilities, dtype=np.float64)
    true_labels = np.asarray(true_labels, dtype=np.int64)
    class_names = [str(name) for name in class_names]
    num_images, num_classes = probabilities.shape if probabilities.ndim == 2 else (0, 0)
    if num_classes != len(class_names) or len(true_labels) != num_images:
        raise ValueError(f"probabilities {probabilities.shape}, {len(true_labels)} labels and "
                         f"{len(class_names)} class names do not fit together")
    if num_images == 0:
        raise ValueError("no images to evaluate")
    if true_labels.min() < 0 or true_labels.max() >= num_classes:
        raise ValueError(f"true labels must be class indices 0..{num_classes - 1}")
    if paths is not None and len(paths) != num_images:
        raise ValueError(f"{len(paths)} paths for {num_images} images")

    predicted = probabilities.argmax(axis=1)  # (N,)
    k = max(1, min(int(top_k), num_classes))
    top = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]  # (N, k)
    top_k_accuracy = float(np.mean(np.any(top == true_labels[:, None], axis=1)))
    accuracy = float(np.mean(predicted == true_labels))
    support = np.bincount(true_labels, minlength=num_classes)
    present = [index for index in range(num_classes) if support[index] > 0]

    # Numbers by position, never by name: a class may be called "accuracy" or
    # "macro avg", which are also keys of classification_report's dict.
    precision, recall, f1, _ = precision_recall_fscore_support(
        true_labels, predicted, labels=present, zero_division=0)  # each (len(present),)
    averages = {average: precision_recall_fscore_support(
        true_labels, predicted, labels=present, average=average, zero_division=0)[:3]
        for average in ("macro", "weighted")}
    report_text = classification_report(
        true_labels, predicted, labels=present, target_names=[class_names[i] for i in present],
        digits=3, zero_division=0)
    small = [class_names[i] for i in present if support[i] < MIN_TRUSTED_SUPPORT]
    lines = report_text.rstrip("\n").split("\n")
    # Rows 2..2+len(present) of classification_report are the classes, in order.
    for row, index in enumerate(present, start=2):
        if support[index] < MIN_TRUSTED_SUPPORT:
            lines[row] += "   <- too small to trust"
    summary = [f"images: {num_images}", f"accuracy: {accuracy:.2%}",
               f"top-{k} accuracy: {top_k_accuracy:.2%}"]
    absent = [name for name, count in zip(class_names, support) if count == 0]
    if absent:
        summary.append(f"classes without images here: {', '.join(absent)}")
    if small:
        summary.append(f"too small to trust (< {MIN_TRUSTED_SUPPORT} images): {', '.join(small)}")
    summary.extend(notes)  # the caller's own lines: how the split was made, ...
    matrix = confusion_matrix(true_labels, predicted, labels=range(num_classes))  # (C, C)
    if num_classes > MAX_MATRIX_CLASSES:  # the picture is a list then: so is the text
        confusions = top_confusions(matrix, class_names, MANY_CLASSES_CONFUSIONS)
        summary += [f"largest confusions (true -> predicted: images, share of the true class; "
                    f"full {num_classes}x{num_classes} matrix in metrics.json):"]
        summary += [f"  {c['true']} -> {c['predicted']}: {c['count']} ({c['share']:.0%})"
                    for c in confusions] or ["  none"]
    text = "\n".join(lines + [""] + summary) + "\n"

    worst = _worst_mistakes(probabilities, true_labels, predicted, class_names, paths)
    metrics = {
        "num_images": num_images,
        "accuracy": accuracy,
        "top_k": k,
        "top_k_accuracy": top_k_accuracy,
        "class_names": class_names,
        "per_class": {
            class_names[i]: {
                "precision": float(precision[row]),
                "recall": float(recall[row]),
                "f1": float(f1[row]),
                "support": int(support[i]),
                "too_small_to_trust": bool(support[i] < MIN_TRUSTED_SUPPORT),
            } for row, i in enumerate(present)},
        "macro_avg": _averages(averages["macro"], num_images),
        "weighted_avg": _averages(averages["weighted"], num_images),
        "min_trusted_support": MIN_TRUSTED_SUPPORT,
        "confusion_matrix": matrix.tolist(),  # rows: true class, columns: predicted
        "worst_misclassified": worst,
    }
    return metrics, text


def _averages(numbers, support):
    precision, recall, f1 = numbers
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1),
            "support": int(support)}


def _worst_mistakes(probabilities, true_labels, predicted, class_names, paths):
    """The MAX_WORST wrong predictions with the highest confidence, most confident first."""
    wrong = np.flatnonzero(predicted != true_labels)
    confidence = probabilities[wrong, predicted[wrong]]
    order = wrong[np.argsort(-confidence, kind="stable")][:MAX_WORST]
    return [{"index": int(i),
             "path": None if paths is None else os.fspath(paths[i]),
             "true": class_names[true_labels[i]],
             "predicted": class_names[predicted[i]],
             "probability": round(float(probabilities[i, predicted[i]]), 6)} for i in order]


def top_confusions(matrix, class_names, limit=10):
    """[{"true", "predicted", "count", "share"}]: the largest off-diagonal cells, largest first."""
    matrix = np.asarray(matrix)
    totals = matrix.sum(axis=1)
    off_diagonal = matrix * (1 - np.eye(len(matrix), dtype=matrix.dtype))
    rows, columns = np.nonzero(off_diagonal)
    order = np.lexsort((columns, rows, -off_diagonal[rows, columns]))[:limit]
    return [{"true": class_names[rows[i]], "predicted": class_names[columns[i]],
             "count": int(off_diagonal[rows[i], columns[i]]),
             "share": float(off_diagonal[rows[i], columns[i]] / totals[rows[i]])} for i in order]


def plot_confusion_matrix(matrix, class_names, path, title=""):
    """Counts in each cell, colour = share of the true class (row-normalised).

    Only classes that occur (as truth or prediction) are drawn, so evaluating
    a few classes of a 50-class model gives a small, readable picture. Above
    MAX_MATRIX_CLASSES of them no matrix is drawn: a bar chart of the largest
    confusions says more than 649 x 649 unreadable cells.
    """
    matrix = np.asarray(matrix)
    shown = [i for i in range(len(class_names)) if matrix[i].sum() or matrix[:, i].sum()]
    if len(shown) > MAX_MATRIX_CLASSES:
        plot_top_confusions(matrix, class_names, path, title=title, num_shown=len(shown))
        return
    matrix = matrix[np.ix_(shown, shown)]
    names = [class_names[i] for i in shown]
    count = len(names)
    row_totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, row_totals, out=np.zeros(matrix.shape), where=row_totals > 0)
    # ~0.4 inch per class keeps 50 class names and 2-3 digit counts readable.
    side = min(22.0, max(5.0, 0.4 * count + 2.5))
    font = 10 if count <= 12 else (8 if count <= 25 else 7)
    figure, axis = plt.subplots(figsize=(side + 1.2, side))
    image = axis.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04, label="share of the true class")
    for row in range(count):
        for column in range(count):
            if matrix[row, column] or count <= 12:
                axis.text(column, row, str(matrix[row, column]), ha="center", va="center",
                          fontsize=font, color="white" if shares[row, column] > 0.5 else "black")
    axis.set_xticks(range(count), names, rotation=45 if count <= 12 else 90,
                    ha="right" if count <= 12 else "center", fontsize=font)
    axis.set_yticks(range(count), [f"{name} ({int(total)})" for name, total in
                                   zip(names, row_totals[:, 0])], fontsize=font)
    axis.set_xlabel("predicted class")
    axis.set_ylabel("true class (images)")
    axis.set_title(f"Confusion matrix: {title}" if title else "Confusion matrix")
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=100)
    plt.close(figure)


def plot_top_confusions(matrix, class_names, path, title="", num_shown=None,
                        limit=MANY_CLASSES_CONFUSIONS):
    """A horizontal bar per confusion `true → predicted`, largest on top, labelled with its count."""
    confusions = top_confusions(matrix, class_names, limit)
    figure, axis = plt.subplots(figsize=(9, 1.6 + 0.28 * max(len(confusions), 1)))
    labels = [f"{c['true']} → {c['predicted']}" for c in confusions]
    counts = [c["count"] for c in confusions]
    axis.barh(range(len(counts)), counts, color="#4a7ebb")
    for row, confusion in enumerate(confusions):
        axis.text(confusion["count"], row, f" {confusion['count']} ({confusion['share']:.0%})",
                  va="center", fontsize=8)
    axis.set_yticks(range(len(labels)), labels, fontsize=8)
    axis.invert_yaxis()
    axis.set_xlabel("images (share of the true class)")
    if not confusions:
        axis.text(0.5, 0.5, "no confusions", ha="center", va="center", transform=axis.transAxes)
    classes = num_shown or len(class_names)
    axis.set_title((f"{title}\n" if title else "") + f"The {len(confusions)} largest confusions "
                   f"of {classes} classes (too many for a matrix; all in metrics.json)",
                   fontsize=10)
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=100)
    plt.close(figure)


def plot_worst(worst, path, thumbnail_size=128):
    """A contact sheet of mistakes, each titled `true → predicted (p%)`."""
    if not worst:
        figure = plt.figure(figsize=(4, 1))
        figure.text(0.5, 0.5, "no misclassified images", ha="center", va="center")
        figure.savefig(path, format="png", dpi=100)
        plt.close(figure)
        return
    columns = min(4, len(worst))
    rows = -(-len(worst) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(2.4 * columns, 2.7 * rows),
                                squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, mistake in zip(axes.flat, worst):
        thumbnail = _thumbnail(mistake["path"], thumbnail_size)
        if thumbnail is not None:
            axis.imshow(thumbnail)
        else:
            axis.text(0.5, 0.5, f"image #{mistake['index']}" if mistake["path"] is None
                      else "unreadable", ha="center", va="center", transform=axis.transAxes)
        name = "" if mistake["path"] is None else printable(os.path.basename(mistake["path"]))
        axis.set_title(f"{mistake['true']} → {mistake['predicted']} "
                       f"({mistake['probability']:.0%})\n{name[:28]}", fontsize=8)
    figure.suptitle("Most confident mistakes (true → predicted)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=90)
    plt.close(figure)


def _thumbnail(path, size):
    if path is None:
        return None
    try:
        image = open_rgb(path, size)
    except UnreadableImageError:
        return None
    image.thumbnail((size, size))
    return np.asarray(image)

