"""The model knows its data: a fingerprint of the training folder, and whether data moved on.

- `fingerprint` (train.py, into the model's description): the class list,
  files per class as the folder scan lists them, usable images per class,
  and a sha256 over the sorted content hashes of the images.
- `dataset_changes` (classify.py, evaluate.py and serve.py, through
  inference.Classifier): lists the training folder again (names only, no
  decoding: milliseconds) and returns one line when it gained or lost
  classes, or a class's file count moved by more than CHANGED_SHARE; a
  folder too big to list quickly (MAX_LISTED_FILES, MAX_LISTING_SECONDS) is
  not checked, and the line says so.
- `compare_folder` (`evaluate.py --drift DIR`): classifies a new folder and
  compares it with the validation split the model stored (confidence.py):
  how many images are unknown against the 5% expected, the mean unknown
  score, and the mix of predicted classes; it says whether to retrain (a
  share or a mix only counts when chance would rarely give it: binomial and
  chi-square tests at p < 0.01, so ten images cannot raise an alarm alone).
"""

import hashlib
import os

import numpy as np

CHANGED_SHARE = 0.2  # a class whose file count moved by more than this has "changed a lot"
# dataset_changes runs on every classify.py call: a training folder such as /usr
# (140,000 files, 7 s) is not listed past these, and the check says it stopped.
MAX_LISTED_FILES = 50_000
MAX_LISTING_SECONDS = 1.0
# --drift advises retraining on any of these (see compare_folder):
UNKNOWN_RATIO_LIMIT = 2.0  # unknown share over twice the validation split's...
CHANCE = 0.01  # ...and beyond chance: a binomial (mix: chi-square) p-value under this
SCORE_RATIO_LIMIT = 1.5  # mean unknown score 1.5x the validation split's
MIX_DISTANCE_LIMIT = 0.25  # total variation between predicted-class mixes (and beyond chance)


def fingerprint(root, class_names, labels, hashes):
    """The description's `data_fingerprint` for a training folder."""
    from pyimagesearch.dataset import list_class_files

    listed, files = list_class_files(root)
    per_class = np.bincount([index for _, index in files], minlength=len(listed))
    usable = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(class_names))
    return {
        "dataset": os.path.abspath(root),
        "classes": list(class_names),
        "files_per_class": {name: int(count) for name, count in zip(listed, per_class)},
        "images_per_class": {name: int(count) for name, count in zip(class_names, usable)},
        "content_sha256": hashlib.sha256("\n".join(sorted(hashes)).encode()).hexdigest(),
    }


def dataset_changes(recorded, root=None):
    """One line saying how the training folder changed since training, or None.

    `recorded`: the description's data_fingerprint. `root` defaults to the
    folder it names; a folder that is gone (the model travelled) says nothing.
    """
    from pyimagesearch.dataset import DatasetError, ListingTooLongError, list_class_files

    root = root or recorded.get("dataset")
    before = recorded.get("files_per_class")
    if not root or not before or not os.path.isdir(root):
        return None
    try:
        listed, files = list_class_files(root, MAX_LISTED_FILES, MAX_LISTING_SECONDS)
    except ListingTooLongError as error:
        return (f"[INFO] did not check the training folder {root} for changes since training "
                f"({error}; a quick check stops there)")
    except (DatasetError, OSError):
        return None
    now = dict(zip(listed, np.bincount([index for _, index in files],
                                       minlength=len(listed)).tolist()))
    gained = sorted(set(now) - set(before))
    lost = sorted(set(before) - set(now))
    moved = [f"{name} {before[name]} -> {now[name]}" for name in sorted(set(now) & set(before))
             if abs(now[name] - before[name]) > CHANGED_SHARE * max(before[name], 1)]
    if not (gained or lost or moved):
        return None
    parts = ([f"gained class(es) {', '.join(gained)}"] if gained else []) + \
            ([f"lost class(es) {', '.join(lost)}"] if lost else []) + \
            ([f"files changed in {'; '.join(moved)}"] if moved else [])
    return (f"[WARNING] the training folder {root} changed since this model was trained: "
            f"{'; '.join(parts)}. Retrain (train.py) for the model to know it")


def compare_folder(head, probabilities, scores, unknown):
    """How far a new folder's images are from the validation split the head was fitted on.

    probabilities (N, C), scores (N,) unknown scores, unknown (N,) bool: the
    classifier's answers on the new images. Returns a JSON-able dict with the
    figures, the reasons found and `retrain` (bool).
    """
    reference = head.validation
    expected_unknown = head.false_unknown_rate
    unknown_share = float(np.mean(unknown)) if len(unknown) else 0.0
    score_ratio = float(np.mean(scores) / reference["mean_score"]) if len(scores) and \
        reference["mean_score"] > 0 else float("nan")
    mix = np.bincount(np.asarray(probabilities).argmax(axis=1),
                      minlength=len(reference["prediction_mix"])) / max(len(probabilities), 1)
    mix_distance = float(0.5 * np.abs(mix - np.asarray(reference["prediction_mix"])).sum())
    from scipy import stats

    count = len(unknown)
    # A handful of images swings the shares: flag only what chance would rarely give.
    unknown_p = float(stats.binom.sf(int(np.sum(unknown)) - 1, count, expected_unknown)) \
        if count else 1.0
    observed = np.bincount(np.asarray(probabilities).argmax(axis=1), minlength=len(mix)) \
        if count else np.zeros(len(mix))
    smoothed = (np.asarray(reference["prediction_mix"]) * count + 0.5)
    mix_p = float(stats.chisquare(observed + 0.5, smoothed * (observed.sum() + 0.5 * len(mix))
                                  / smoothed.sum()).pvalue) if count else 1.0
    reasons = []
    if unknown_share > UNKNOWN_RATIO_LIMIT * expected_unknown and unknown_p < CHANCE:
        reasons.append(f"{unknown_share:.0%} of the images are unknown (validation: "
                       f"{expected_unknown:.0%})")
    if score_ratio > SCORE_RATIO_LIMIT:
        reasons.append(f"their mean distance from the training classes is {score_ratio:.1f}x "
                       "the validation images'")
    if mix_distance > MIX_DISTANCE_LIMIT and mix_p < CHANCE:
        reasons.append(f"the mix of predicted classes differs from validation's by "
                       f"{mix_distance:.0%} (total variation)")
    return {"images": int(len(scores)), "unknown_share": unknown_share,
            "validation_unknown_share": expected_unknown, "mean_score_ratio": score_ratio,
            "unknown_p_value": unknown_p, "prediction_mix": mix.tolist(),
            "validation_prediction_mix": list(reference["prediction_mix"]),
            "mix_distance": mix_distance, "mix_p_value": mix_p,
            "reasons": reasons, "retrain": bool(reasons)}


def check_folder(classifier, folder, batch_size=32, log=print, chunk=256):
    """`evaluate.py --drift DIR`: classify every image under `folder`, compare, print, return.

    Returns compare_folder's dict (plus "skipped"), or None when the model has
    no confidence head to compare with (trained by an older train.py) or the
    folder holds no readable image. Images are decoded `chunk` at a time.
    """
    from pyimagesearch.imageio import UnreadableImageError, load_image
    from pyimagesearch.imageio import find_images

    if classifier.head is None or classifier.head.validation is None or \
            not classifier.head.answers_unknown:
        log("[WARNING] --drift needs a model from this train.py whose validation split had at "
            "least 20 images (it compares with that split's figures); retrain to use it")
        return None
    skipped, parts = [], []
    paths = find_images(folder)
    for start in range(0, len(paths), chunk):
        images = []
        for path in paths[start:start + chunk]:
            try:
                images.append(load_image(path, classifier.image_size))
            except UnreadableImageError as error:
                skipped.append(path)
                log(f"[WARNING] skipped {error}")
        if images:
            parts.append(classifier.answer_arrays(np.stack(images), batch_size, scores=True))
    if not parts:
        log(f"[WARNING] --drift: no readable images in {folder}")
        return None
    probabilities, unknown, scores = (np.concatenate([part[i] for part in parts])
                                      for i in range(3))
    answers = compare_folder(classifier.head, probabilities, scores, unknown)
    answers["skipped"] = skipped
    mix = ", ".join(f"{name} {share:.0%}" for name, share in
                    zip(classifier.class_names, answers["prediction_mix"]) if share > 0)
    log(f"[INFO] {answers['images']} images in {folder}: {answers['unknown_share']:.1%} unknown "
        f"(validation {answers['validation_unknown_share']:.0%}); mean distance "
        f"{answers['mean_score_ratio']:.2f}x validation's; predicted {mix}")
    if answers["retrain"]:
        log("[INFO] retraining is advised: " + "; ".join(answers["reasons"]))
    else:
        log("[INFO] these images look like the training data; no need to retrain")
    return answers
