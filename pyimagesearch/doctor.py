"""The dataset doctor: what is wrong with a folder of labelled images, and what to do about it.

`examine` reads the folder the way train.py does (the same loader and
decoded-image cache, with each file's sha256 and perceptual hash) and returns
findings, each {"kind", "files", "detail", "advice"}:

    unreadable              files train.py would skip
    duplicate, duplicate-across-classes
                            the same bytes twice (across classes: a labelling error)
    near-duplicate, near-duplicate-across-classes
                            perceptual hashes within NEAR_DUPLICATE_BITS bits
    wrong-extension         a file whose content is another format than its name says
    too-small               images under half the training size, so upscaled over 2x
    near-blank              almost one colour (standard deviation of the pixels < 4)
    small-class, imbalance  classes too small to trust; largest / smallest >= 3
    likely-mislabelled      (with a model) images whose given label the model disagrees
                            with most confidently, ranked as confident learning does

`quarantine` moves chosen files out of the dataset (never deletes) and logs
every move in a CSV, so `undo` can put them back. Nothing here imports TensorFlow;
the model, when given, is used through inference.Classifier.
"""

import csv
import datetime
import os
import shutil

import numpy as np
from PIL import Image

from pyimagesearch import dataset as dataset_lib
from pyimagesearch.splitting import NEAR_DUPLICATE_BITS, near_duplicate_pairs

MIN_CLASS_IMAGES = 20  # as evaluation's "too small to trust"
IMBALANCE_RATIO = 3.0
MAX_THRESHOLD = 0.5  # cap on confident learning's per-class thresholds
BLANK_STD = 4.0  # pixel standard deviation (0-255) under which an image is nearly one colour
EXTENSION_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".gif": "GIF",
                     ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP"}
ADVICE = {
    "unreadable": "remove them or download them again; train.py skips them",
    "duplicate": "keep one copy: a duplicate counts twice in training "
                 "(train.py keeps copies in one split part, so scores stay honest)",
    "duplicate-across-classes": "the same image under two labels: keep it in the right class only",
    "near-duplicate": "usually frames or re-saves of one picture; keep the best one if the "
                      "class has plenty, else leave them (they stay in one split part)",
    "near-duplicate-across-classes": "look at them: one of the labels is probably wrong",
    "wrong-extension": "harmless here (files are read by content), but other tools may trip "
                       "over them: rename them",
    "too-small": "they are upscaled over 2x to the training size and look blurry: replace "
                 "them with larger pictures if you can",
    "near-blank": "almost one colour: probably a failed download or a placeholder; remove them",
    "small-class": "add images: under 20, its test numbers are too few to trust",
    "imbalance": "train with --class-weight balanced, or add images to the small classes",
    "likely-mislabelled": "look at them: if the model is right, move them to the class it "
                          "names (the model saw these images in training, so it misses some)",
}


def examine(folder, image_size, probabilities=None, class_names=None):
    """Findings about `folder` (a dataset.ImageFolder); `probabilities` (N, C) from a model."""
    names = folder.class_names
    labels, paths = folder.labels, folder.paths
    findings = []

    def add(kind, files, detail):
        findings.append({"kind": kind, "files": files, "detail": detail, "advice": ADVICE[kind]})

    if folder.skipped:
        add("unreadable", [line.split(": ")[0] for line in folder.skipped], list(folder.skipped))
    read = dataset_lib.row_reader(folder.images)
    blank_rows = [row for row in range(len(paths))  # per channel: one colour, any colour
                  if float(np.std(read([row])[0], axis=(0, 1)).max()) < BLANK_STD]
    for kind, groups in _duplicate_groups(folder, blank_rows).items():
        for rows in groups:
            classes = sorted({names[labels[row]] for row in rows})
            add(kind, [paths[row] for row in rows], f"{len(rows)} files, "
                f"class{'es' if len(classes) > 1 else ''} {', '.join(classes)}")
    mismatched, small = [], []
    for path in paths:
        fmt, size = _format_and_size(os.path.join(folder.root, path))
        expected = EXTENSION_FORMATS.get(os.path.splitext(path)[1].lower())
        if fmt and expected and fmt != expected and not (fmt == "MPO" and expected == "JPEG"):
            mismatched.append((path, f"{path}: named {expected}, is {fmt}"))
        if size and min(size) < image_size / 2:
            small.append((path, f"{path}: {size[0]}x{size[1]} px"))
    if mismatched:
        add("wrong-extension", [p for p, _ in mismatched], [d for _, d in mismatched])
    if small:
        add("too-small", [p for p, _ in small], [d for _, d in small])
    blank = [paths[row] for row in blank_rows]
    if blank:
        add("near-blank", blank, f"{len(blank)} image(s) with pixel std < {BLANK_STD:g}")
    counts = np.bincount(labels, minlength=len(names))
    for name, count in zip(names, counts):
        if 0 < count < MIN_CLASS_IMAGES:
            add("small-class", [], f"{name}: {count} image(s)")
    present = counts[counts > 0]
    if len(present) > 1 and present.max() / present.min() >= IMBALANCE_RATIO:
        add("imbalance", [], f"largest class {present.max()} images, smallest {present.min()} "
                             f"({present.max() / present.min():.1f}x)")
    if probabilities is not None:
        suspects = likely_mislabelled(probabilities, labels)
        if suspects:
            model_names = class_names or names
            add("likely-mislabelled", [paths[row] for row, _, _ in suspects],
                [f"{paths[row]}: labelled {names[labels[row]]}, the model says "
                 f"{model_names[guess]} ({probabilities[row, guess]:.0%}; "
                 f"{probabilities[row, labels[row]]:.0%} for its label)"
                 for row, guess, _ in suspects])
    return {"dataset": folder.root, "image_size": image_size, "images": len(paths),
            "classes": {name: int(count) for name, count in zip(names, counts)},
            "near_duplicate_bits": NEAR_DUPLICATE_BITS, "findings": findings}


def likely_mislabelled(probabilities, labels):
    """[(row, suggested class, margin)] most confident first: confident learning's off-diagonal.

    Per class j the threshold t_j is the mean probability of j over the images
    labelled j (how sure the model usually is of that class), capped at 0.5:
    a model that gives its classes 0.99 on average would otherwise not count
    an image it gives 0.98. An image counts as class j when p_j >= t_j (the
    largest such j when several); those whose counted class is not their label
    are the suspects, ranked by p_counted - p_label (Northcutt et al.,
    "Confident learning", 2021, without its cross-validation).
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels)
    classes = probabilities.shape[1]
    thresholds = np.array([min(probabilities[labels == j, j].mean(), MAX_THRESHOLD)
                           if np.any(labels == j) else 1.0 for j in range(classes)])
    above = np.where(probabilities >= thresholds, probabilities, -1.0)
    counted = above.argmax(axis=1)
    confident = above.max(axis=1) >= 0
    rows = np.flatnonzero(confident & (counted != labels))
    margins = probabilities[rows, counted[rows]] - probabilities[rows, labels[rows]]
    order = np.argsort(-margins, kind="stable")
    return [(int(rows[i]), int(counted[rows[i]]), float(margins[i])) for i in order]


def _duplicate_groups(folder, blank_rows=()):
    """{"duplicate": [[rows]], ...}: exact (sha256) and near (phash) groups of 2 or more.

    Near-blank images are left out of the near duplicates: every flat image has
    the same perceptual hash, whatever its colour.
    """
    labels = folder.labels
    by_hash = {}
    for row, digest in enumerate(folder.hashes):
        by_hash.setdefault(digest, []).append(row)
    groups = {"duplicate": [], "duplicate-across-classes": [], "near-duplicate": [],
              "near-duplicate-across-classes": []}
    exact_of = np.arange(len(labels))
    for rows in by_hash.values():
        if len(rows) > 1:
            across = len({labels[row] for row in rows}) > 1
            groups["duplicate-across-classes" if across else "duplicate"].append(rows)
            exact_of[rows] = rows[0]
    # Near duplicates: join pairs into groups, leaving out pairs of exact copies.
    first, second = near_duplicate_pairs(folder.phashes)
    flat = np.zeros(len(labels), dtype=bool)
    flat[list(blank_rows)] = True
    keep = (exact_of[first] != exact_of[second]) & ~flat[first] & ~flat[second]
    parent = list(range(len(labels)))

    def root(row):
        while parent[row] != row:
            parent[row] = parent[parent[row]]
            row = parent[row]
        return row

    for a, b in zip(exact_of[first[keep]], exact_of[second[keep]]):
        parent[root(int(a))] = root(int(b))
    near = {}
    for row in sorted({int(r) for r in np.concatenate([first[keep], second[keep]])}):
        near.setdefault(root(int(exact_of[row])), set()).add(row)
    for rows in near.values():
        rows = sorted(rows)
        if len(rows) > 1:
            across = len({labels[row] for row in rows}) > 1
            groups["near-duplicate-across-classes" if across else "near-duplicate"].append(rows)
    return groups


def _format_and_size(path):
    try:
        with Image.open(path) as image:
            return image.format, image.size
    except Exception:  # unreadable files are reported from the loader already
        return None, None


# --- moving files out, and back ---------------------------------------------------------

# The kinds whose files can be moved: unreadable files are left for the user (they may be
# half-downloaded, still being written), class-level findings name no file.
MOVABLE = tuple(kind for kind in ADVICE if kind not in ("unreadable", "small-class", "imbalance"))

LOG_NAME = "quarantine-log.csv"
# A file name that is not UTF-8 is logged byte for byte, so that --undo finds it again.
LOG_ENCODING = {"encoding": "utf-8", "errors": "surrogateescape"}


def files_to_move(report, kinds):
    """Dataset-relative paths the chosen finding kinds would move.

    Of a group of exact or near duplicates within one class the first file
    stays; across classes every copy moves (which label is right needs a look).
    """
    chosen = []
    for finding in report["findings"]:
        if finding["kind"] not in kinds or finding["kind"] not in MOVABLE:
            continue
        files = finding["files"]
        if finding["kind"] in ("duplicate", "near-duplicate"):
            files = files[1:]
        chosen += [path for path in files if path not in chosen]
    return chosen


def quarantine(dataset_root, paths, destination, reason, log=print):
    """Move `paths` (relative to `dataset_root`) under `destination`; log each move. Returns moves."""
    os.makedirs(destination, exist_ok=True)
    log_path = os.path.join(destination, LOG_NAME)
    new_log = not os.path.exists(log_path)
    moved = []
    with open(log_path, "a", newline="", **LOG_ENCODING) as handle:
        writer = csv.writer(handle)
        if new_log:
            writer.writerow(["time", "from", "to", "reason"])
        for relative in paths:
            source = os.path.join(dataset_root, relative)
            target = _free_name(os.path.join(destination, relative))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.move(source, target)
            writer.writerow([datetime.datetime.now().isoformat(timespec="seconds"),
                             os.path.abspath(source), os.path.abspath(target), reason])
            handle.flush()  # a crash mid-way still leaves every done move logged
            moved.append((source, target))
    log(f"[INFO] moved {len(moved)} file(s) to {destination}; the moves are listed in {log_path} "
        f"(undo: doctor.py --undo {destination})")
    return moved


def undo(destination, log=print):
    """Move every logged file back where it came from, unless something is there now."""
    log_path = os.path.join(destination, LOG_NAME)
    with open(log_path, newline="", **LOG_ENCODING) as handle:
        rows = list(csv.DictReader(handle))
    restored, kept = 0, []
    for row in reversed(rows):
        if os.path.exists(row["to"]) and not os.path.exists(row["from"]):
            os.makedirs(os.path.dirname(row["from"]), exist_ok=True)
            shutil.move(row["to"], row["from"])
            restored += 1
        elif os.path.exists(row["to"]):
            kept.append(row)
    with open(log_path, "w", newline="", **LOG_ENCODING) as handle:  # what is still out, for a later undo
        writer = csv.DictWriter(handle, fieldnames=["time", "from", "to", "reason"])
        writer.writeheader()
        writer.writerows(reversed(kept))
    log(f"[INFO] moved {restored} file(s) back; {len(kept)} left where they are (a file of "
        "that name is in the dataset again)")
    return restored


def _free_name(path):
    stem, extension = os.path.splitext(path)
    candidate, number = path, 1
    while os.path.exists(candidate):
        candidate, number = f"{stem}.{number}{extension}", number + 1
    return candidate

