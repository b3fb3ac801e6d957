"""Which score makes `unknown` mean something: softmax, calibrated softmax, energy, Mahalanobis.

    /tmp/datavenv/bin/python bench/build_photos.py --output bench/data/photos   # once
    python bench/bench_unknown.py --dataset dataset --unknown-class pikachu \
        --photos bench/data/photos                                   # ~10 min on 2 cores
    python bench/bench_unknown.py --dataset bench/data/shift/train --unknown-class gengar \
        --other-style bench/data/shift/test --archs smallervggnet,efficientnet-lite0 \
        --train-flags ""                          # issue 22: the two networks side by side

Trains train.py (its defaults) on the bundled dataset without one class, then
scores four kinds of images with the kept model:

    known test      the run's own held-out test split (classes it knows)
    fifth class     every image of the class left out (a Pokemon it never saw)
    photographs     crops of scikit-image's photographs (a cat, coffee, a rocket, ...)

Scores (higher = more likely unknown), each with its threshold set on the
validation split so that 5% of validation images are called unknown:

    softmax             1 - max probability, as the model gives it (what
                        --min-confidence does today)
    softmax-calibrated  the same after temperature scaling fitted on validation
    energy              -logsumexp(logits) (Liu et al. 2020)
    mahalanobis-penultimate  squared distance of the penultimate features (the
                        last Dense layer's input) to the nearest class mean,
                        shared Ledoit-Wolf covariance (Lee et al. 2018)
    mahalanobis         the same on the last conv feature map averaged over
                        space: what train.py stores and classify.py uses

Printed: the share called unknown per kind of image and the AUROC of known
test vs each unknown kind (1.0 = perfectly separated, 0.5 = chance); expected
calibration error on the known test split before and after temperature scaling.
Results go to bench/results/unknown-<time>/ (train log, summary.json).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
sys.path.insert(0, REPO)
SCORES = ("softmax", "softmax-calibrated", "energy", "mahalanobis-penultimate", "mahalanobis")


def known_folder(dataset, unknown_class, folder):
    """A dataset folder of every class but `unknown_class` (symlinks), and its groups.csv."""
    os.makedirs(folder, exist_ok=True)
    for name in sorted(os.listdir(dataset)):
        source = os.path.join(dataset, name)
        if os.path.isdir(source) and name != unknown_class:
            os.symlink(os.path.abspath(source), os.path.join(folder, name))
    if os.path.exists(os.path.join(dataset, "groups.csv")):
        shutil.copy(os.path.join(dataset, "groups.csv"), os.path.join(folder, "groups.csv"))
    return folder


def train(folder, model_path, extra, log_path):
    command = [sys.executable, "train.py", "--dataset", folder, "--model", model_path,
               "--labelbin", model_path + ".pickle", "--plot", model_path + ".png"] + extra
    started = time.time()
    with open(log_path, "w") as log:
        code = subprocess.call(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                               env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    if code:
        raise SystemExit(f"train.py failed ({code}); see {log_path}")
    return time.time() - started


def all_scores(head, features, penultimate_distance):
    """{score name: (N,) scores}, higher = more likely unknown. features: (penultimate, distance)."""
    from pyimagesearch import confidence

    logits = head.logits(features[0])
    top = logits.max(axis=1, keepdims=True)
    return {
        "softmax": 1.0 - confidence.softmax(logits).max(axis=1),
        "softmax-calibrated": 1.0 - confidence.softmax(logits, head.temperature).max(axis=1),
        "energy": -(top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))),
        "mahalanobis-penultimate": penultimate_distance.distance(features[0]),
        "mahalanobis": head.mahalanobis.distance(features[1]),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="dataset")
    parser.add_argument("--unknown-class", default="pikachu")
    parser.add_argument("--photos", default="bench/data/photos")
    parser.add_argument("--other-style", default=None, metavar="DIR",
                        help="images of the known classes in another style (class folders, "
                             "e.g. bench/data/shift/test): share answered right and unknown")
    parser.add_argument("--archs", default="smallervggnet",
                        help="comma-separated networks, side by side (e.g. "
                             "smallervggnet,efficientnet-lite0)")
    # The bundled classes are 4 animations each (groups.csv): a quarter each for
    # validation and test holds one whole unseen animation per class out of training.
    parser.add_argument("--train-flags", default="--val-split 0.25 --test-split 0.25",
                        help="extra train.py flags, one string")
    parser.add_argument("--model", help="reuse a model trained earlier by this bench (skip "
                                        "training; one network)")
    args = parser.parse_args()

    results = os.path.join(REPO, "bench", "results", time.strftime("unknown-%Y%m%d-%H%M%S"))
    os.makedirs(results)
    folder = known_folder(os.path.join(REPO, args.dataset), args.unknown_class,
                          os.path.join(results, "known"))
    summaries = {}
    for arch in [name.strip() for name in args.archs.split(",") if name.strip()]:
        summaries[arch] = measure(arch, args, folder, results)
        with open(os.path.join(results, "summary.json"), "w") as handle:
            json.dump(summaries, handle, indent=2)
    if len(summaries) > 1:
        print_side_by_side(summaries)
    print(f"\nresults in {results}")


def print_side_by_side(summaries):
    """The product's score (mahalanobis) of every network, one row each."""
    print("\nthe product's unknown rule (mahalanobis, threshold: 5% of validation images)")
    print("| network | test accuracy | known test unknown | photographs unknown | AUROC photos "
          "| fifth class unknown | AUROC fifth | other style right | other style unknown "
          "| train s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for arch, summary in summaries.items():
        row = summary["scores"]["mahalanobis"]
        other = summary.get("other_style") or {}

        def cell(value, form="{:.1%}"):
            return "n/a" if value is None else form.format(value)

        print(f"| {arch} | {cell(summary['calibration']['test_accuracy'])} "
              f"| {cell(row['known test'])} | {cell(row['photographs'])} "
              f"| {cell(row['AUROC photographs'], '{:.3f}')} | {cell(row['fifth class'])} "
              f"| {cell(row['AUROC fifth class'], '{:.3f}')} | {cell(other.get('right'))} "
              f"| {cell(other.get('unknown'))} | {cell(summary['train_seconds'], '{:.0f}')} |")


def measure(arch, args, folder, results):
    """Train `arch` on the known classes (or reuse --model) and score every kind of image."""
    model_path = args.model or os.path.join(results, f"{arch}.model")
    wall = None
    if not args.model:
        print(f"[bench] {arch}: training on {sorted(os.listdir(folder))} (without "
              f"{args.unknown_class})...", flush=True)
        wall = train(folder, model_path, ["--arch", arch] + args.train_flags.split(),
                     os.path.join(results, f"{arch}.train.log"))
        print(f"[bench] {arch}: trained in {wall:.0f} s", flush=True)

    from pyimagesearch import confidence, dataset, features, inference, persistence, splitting
    from pyimagesearch.cli import import_tensorflow_quietly

    import_tensorflow_quietly()
    description = persistence.read_description(model_path)
    settings = description["settings"]
    model = persistence.load_model(model_path)
    extract = features.FeatureExtractor(model)
    size = settings["image_size"]
    data = dataset.load_image_folder(folder, size, settings["cache_dir"], log=lambda line: None)
    split = splitting.make_split(data, val_split=settings["val_split"],
                                 test_split=settings["test_split"], seed=settings["seed"],
                                 log=lambda line: None)
    read = dataset.row_reader(data.images)
    images = {name: (read(np.asarray(rows)), data.labels[np.asarray(rows)])
              for name, rows in (("train", split.train), ("val", split.val),
                                 ("test", split.test))}

    def folder_images(path):
        return np.stack([inference.load_image(file, size) for file in inference.find_images(path)])

    images["fifth class"] = (folder_images(os.path.join(REPO, args.dataset, args.unknown_class)),
                             None)
    images["photographs"] = (folder_images(os.path.join(REPO, args.photos)), None)
    # The tutorial's example images of the known classes (a handful; other art than training's).
    examples = [path for path in inference.find_images(os.path.join(REPO, "examples"))
                if any(name in os.path.basename(path) for name in data.class_names)]
    images["known examples"] = (np.stack([inference.load_image(path, size) for path in examples]),
                                None)
    if args.other_style:  # known classes, another style: labelled by their folder names
        other = dataset.load_image_folder(os.path.join(REPO, args.other_style), size,
                                          settings["cache_dir"], log=lambda line: None)
        index = {name: data.class_names.index(name) for name in other.class_names
                 if name in data.class_names}
        keep = np.asarray([other.class_names[label] in index for label in other.labels])
        images["other style"] = (dataset.row_reader(other.images)(np.flatnonzero(keep)),
                                 np.asarray([index[other.class_names[label]]
                                             for label in other.labels[keep]]))
    features_of = {name: extract(pixels) for name, (pixels, _) in images.items()}
    labels = {name: images[name][1] for name in ("train", "val", "test")}
    parts = {name: (features_of[name][0], labels[name]) for name in ("train", "val", "test")}
    unknown = {name: features_of[name][0] for name in ("fifth class", "photographs")}
    # The product's head: the same fit train.py runs at the end of training.
    head = confidence.Head.fit(extract.kernel, extract.bias, features_of["train"], labels["train"],
                               features_of["val"], labels["val"])
    penultimate_distance = confidence.Mahalanobis.fit(features_of["train"][0], labels["train"],
                                                      len(data.class_names))

    from sklearn.metrics import roc_auc_score

    def scores(name):
        return all_scores(head, features_of[name], penultimate_distance)

    validation, known_test = scores("val"), scores("test")
    others = {name: scores(name) for name in unknown}
    examples_scores = scores("known examples")
    table = {}
    for score in SCORES:
        threshold = confidence.unknown_threshold(validation[score])
        row = {"threshold": threshold,
               "known test": float(np.mean(known_test[score] > threshold))
               if len(known_test[score]) else None}
        for name, values in others.items():
            row[name] = float(np.mean(values[score] > threshold))
            if not len(known_test[score]):  # no test part: rank against validation instead
                row[f"AUROC {name}"] = None
                continue
            both = np.concatenate([known_test[score], values[score]])
            truth = np.concatenate([np.zeros(len(known_test[score])), np.ones(len(values[score]))])
            row[f"AUROC {name}"] = float(roc_auc_score(truth, both))
        row["known examples"] = float(np.mean(examples_scores[score] > threshold))
        table[score] = row
    test_features, test_labels = parts["test"]
    calibration = {
        "temperature": head.temperature,
        "ece_before": confidence.expected_calibration_error(
            head.probabilities(test_features, calibrated=False), test_labels),
        "ece_after": confidence.expected_calibration_error(
            head.probabilities(test_features), test_labels),
        "test_accuracy": float(np.mean(head.logits(test_features).argmax(axis=1) == test_labels))
        if len(test_labels) else None,
    }
    photos_max = confidence.softmax(head.logits(unknown["photographs"])).max(axis=1)
    other_style = None
    if "other style" in images:
        threshold = table["mahalanobis"]["threshold"]
        answers = head.answer(*features_of["other style"])
        other_style = {"images": len(images["other style"][1]),
                       "right": float(np.mean(answers[0].argmax(axis=1)
                                              == images["other style"][1])),
                       "unknown": float(np.mean(head.mahalanobis.distance(
                           features_of["other style"][1]) > threshold))}
    summary = {"arch": arch, "other_style": other_style, "unknown_class": args.unknown_class, "known_classes": data.class_names,
               "images": {"train": len(split.train), "val": len(split.val),
                          "known test": len(split.test),
                          **{name: len(values) for name, values in unknown.items()}},
               "train_seconds": wall, "calibration": calibration, "scores": table,
               "photographs_median_top_probability_uncalibrated": float(np.median(photos_max))}
    with open(os.path.join(results, "summary.json"), "w") as handle:
        json.dump(summary, handle, indent=2)

    print(f"\n{arch}: known classes: {', '.join(data.class_names)}; left out: "
          f"{args.unknown_class}")
    if other_style:
        print(f"other style ({args.other_style}): {other_style['right']:.1%} right, "
              f"{other_style['unknown']:.1%} unknown of {other_style['images']}")
    print("images: " + ", ".join(f"{k} {v}" for k, v in summary["images"].items()))
    if not len(test_labels):
        print("the run has no test part (too few groups): the known-image column is n/a; "
              "on validation the rate is 5% by construction")
    print(f"test accuracy {calibration['test_accuracy'] or float('nan'):.1%}; temperature "
          f"{calibration['temperature']:.2f}; ECE on the known test split "
          f"{calibration['ece_before']:.3f} before, {calibration['ece_after']:.3f} after")
    print(f"before: photographs' median top probability {np.median(photos_max):.2%} "
          "(the model always answers a Pokemon)")
    header = (f"{'score':<24}{'known test':>12}{'fifth class':>13}{'photographs':>13}"
              f"{'AUROC fifth':>13}{'AUROC photos':>14}")
    print(f"\ncalled unknown (threshold: 5% of validation images; known examples: "
          f"{len(examples)} of examples/)\n" + header + f"{'known examples':>16}")
    for score, row in table.items():
        cells = [row["known test"], row["fifth class"], row["photographs"]]
        aurocs = [row["AUROC fifth class"], row["AUROC photographs"]]
        print(f"{score:<24}" + "".join(f"{'n/a' if v is None else f'{v:.1%}':>13}" for v in cells)
              + "".join(f"{'n/a' if v is None else f'{v:.3f}':>13}" for v in aurocs)
              + f"{row['known examples']:>16.0%}")
    return summary


if __name__ == "__main__":
    main()
