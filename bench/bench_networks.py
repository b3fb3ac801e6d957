"""Every network on the same budget: digits and the bundled Pokedex, one table.

    python scripts/build_digits.py --output bench/data/digits        # once (1,797 images)
    python bench/bench_networks.py                                   # ~40 min on 2 cores
    python bench/bench_networks.py --datasets digits --archs cnn mlp # a subset

Each (dataset, network) trains with train.py in a fresh process, with the same
budget for all: at most --epochs epochs (default 15) with train.py's default
patience and learning-rate rule, the same seed and split. Per dataset the image
size and channels are the same for every network:

    digits   28 px grey (--channels 1), --augmenter none (flips turn a 6 into
             a 9); transfer needs 32 px, so it gets 32
    pokedex  the bundled dataset/ at 96 px colour, train.py's augmentation

Printed per row: parameters, accuracy on the held-out part (digits: the test
split, images neither training nor the choice of epoch saw; pokedex: its
split leaves no group for a test part, so the validation split, the other pose
of each Pokemon, which also chose the kept epoch: optimistic), epochs run,
training wall time (process start to exit), the LiteRT copy's size, and the
median latency of one image through the LiteRT copy (interpreter already
loaded, the classify.py fast path's per-image cost). Results go to
bench/results/networks-<time>/ (logs, summary.json).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
sys.path.insert(0, REPO)

DATASETS = {
    "digits": {"path": "bench/data/digits", "size": 28, "channels": 1,
               "flags": ["--augmenter", "none"]},
    "pokedex": {"path": "dataset", "size": 96, "channels": 3, "flags": []},
}


def train(arch, dataset, epochs, folder):
    spec = DATASETS[dataset]
    size = max(spec["size"], 32) if arch == "transfer" else spec["size"]
    model = os.path.join(folder, f"{dataset}-{arch}.model")
    command = [sys.executable, "train.py", "--dataset", spec["path"], "--model", model,
               "--labelbin", model + ".pickle", "--plot", model + ".png", "--arch", arch,
               "--image-size", str(size), "--channels", str(spec["channels"]),
               "--epochs", str(epochs), "--seed", "42"] + spec["flags"]
    started = time.time()
    with open(model + ".log", "w") as log:
        code = subprocess.call(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                               env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    wall = time.time() - started
    if code:
        return {"error": f"train.py exit {code}; see {model}.log"}
    return {"model": model, "wall_seconds": wall, "image_size": size}


def measure(row):
    """Parameters, held-out accuracy, epochs, LiteRT size and one-image latency of a trained model."""
    from pyimagesearch import persistence
    from pyimagesearch.litert import LiteRTClassifier

    model_path = row["model"]
    description = persistence.read_description(model_path)
    model = persistence.load_model(model_path)
    tflite = model_path + ".tflite"
    runner = LiteRTClassifier(tflite, num_threads=1, few_images=True)
    image = np.random.default_rng(0).integers(0, 256, (1, runner.image_size, runner.image_size, 3),
                                              dtype=np.uint8)
    runner.predict(image)  # warm
    timings = []
    for _ in range(30):
        started = time.perf_counter()
        runner.predict(image)
        timings.append(time.perf_counter() - started)
    test = description.get("test_accuracy")
    return {"parameters": int(model.count_params()),
            "held_out": "test" if test is not None else "validation",
            "accuracy": test if test is not None else description["best_val_accuracy"],
            "epochs_run": description["epochs_run"], "best_epoch": description["best_epoch"],
            "litert_bytes": os.path.getsize(tflite),
            "latency_ms": 1000 * statistics.median(timings)}


def main():
    from pyimagesearch import networks

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--archs", nargs="+", default=networks.names(), choices=networks.names())
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args()
    folder = os.path.join(REPO, "bench", "results", time.strftime("networks-%Y%m%d-%H%M%S"))
    os.makedirs(folder)
    rows = []
    for dataset in args.datasets:
        if not os.path.isdir(os.path.join(REPO, DATASETS[dataset]["path"])):
            raise SystemExit(f"{DATASETS[dataset]['path']} not found; see this file's docstring")
        for arch in args.archs:
            print(f"[bench] {dataset}: training {arch}...", flush=True)
            row = {"dataset": dataset, "arch": arch, **train(arch, dataset, args.epochs, folder)}
            if "error" not in row:
                row.update(measure(row))
            rows.append(row)
            with open(os.path.join(folder, "summary.json"), "w") as handle:
                json.dump(rows, handle, indent=2)
    print(f"\n{'dataset':<9}{'network':<15}{'parameters':>12}{'accuracy':>10}{'on':>12}"
          f"{'epochs':>8}{'train s':>9}{'LiteRT MB':>11}{'ms/image':>10}")
    for row in rows:
        if "error" in row:
            print(f"{row['dataset']:<9}{row['arch']:<15}  {row['error']}")
            continue
        print(f"{row['dataset']:<9}{row['arch']:<15}{row['parameters']:>12,}"
              f"{row['accuracy']:>10.1%}{row['held_out']:>12}"
              f"{str(row['best_epoch']) + '/' + str(row['epochs_run']):>8}"
              f"{row['wall_seconds']:>9.0f}{row['litert_bytes'] / 2**20:>11.2f}"
              f"{row['latency_ms']:>10.2f}")
    print(f"\nresults in {folder}")


if __name__ == "__main__":
    main()
