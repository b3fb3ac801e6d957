"""Cold start of classifying one image: classify.py (Keras) vs the LiteRT path.

    .venv/bin/python bench/bench_classify.py --model pokedex.model --labelbin lb.pickle \\
        --image examples/charmander.png --runs 7

Every configuration is a fresh process, timed from start to exit, with the
peak RSS from getrusage; runs are interleaved (round robin) so load from
other work on a shared machine hits all alike. Reports medians and ratios to
classify.py. The .tflite copies (float32 and dynamic-range int8) are exported
once into bench/data/ from --model, and their probabilities are compared with
Keras on every image of --compare-dataset.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
sys.path.insert(0, REPO)


def export_and_compare(model_path, float_path, int8_path, dataset):
    """Child role: write both .tflite files, compare them with Keras on `dataset`."""
    from pyimagesearch.cli import import_tensorflow_quietly

    import_tensorflow_quietly()
    import numpy as np

    from pyimagesearch import dataset as dataset_lib
    from pyimagesearch import persistence
    from pyimagesearch.imageio import load_image
    from pyimagesearch.litert import LiteRTClassifier, export_tflite

    model = persistence.load_model(model_path)
    export_tflite(model, float_path)
    export_tflite(model, int8_path, quantize="dynamic")
    size = int(model.input_shape[1])
    _, files = dataset_lib.list_class_files(dataset)
    images = np.stack([load_image(os.path.join(dataset, path), size) for path, _ in files])
    truth = np.array([label for _, label in files])
    reference = model.predict(images.astype(np.float32), batch_size=64, verbose=0)
    report = {"images": len(images), "keras_accuracy": float((reference.argmax(1) == truth).mean())}
    for name, path in (("float32", float_path), ("int8", int8_path)):
        probabilities = np.concatenate([LiteRTClassifier(path).predict(images[i:i + 64])
                                        for i in range(0, len(images), 64)])
        report[name] = {
            "bytes": os.path.getsize(path),
            "max_abs_difference": float(np.abs(probabilities - reference).max()),
            "top1_agreement": float((probabilities.argmax(1) == reference.argmax(1)).mean()),
            "accuracy": float((probabilities.argmax(1) == truth).mean()),
        }
    print(json.dumps(report))


def timed(command):
    started = time.perf_counter()
    child = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    output = child.stdout.read().decode() + child.stderr.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{output}")
    return wall, usage.ru_maxrss / 1024, output.strip().splitlines()[0] if output else ""


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="pokedex.model", help="(default: %(default)s)")
    parser.add_argument("--labelbin", default="lb.pickle", help="(default: %(default)s)")
    parser.add_argument("--image", default="examples/charmander.png", help="(default: %(default)s)")
    parser.add_argument("--runs", type=int, default=7, help="runs per configuration (default: %(default)s)")
    parser.add_argument("--compare-dataset", default="dataset",
                        help="images to compare LiteRT with Keras on (default: %(default)s; "
                             "bench/data/bench1k gives less saturated probabilities)")
    parser.add_argument("--export-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    stem = os.path.join(BENCH, "data", os.path.basename(args.model))
    float_path, int8_path = stem + ".float32.tflite", stem + ".int8.tflite"
    if args.export_child:
        return export_and_compare(args.model, float_path, int8_path, args.compare_dataset)

    os.makedirs(os.path.dirname(stem), exist_ok=True)
    print("[bench] exporting .tflite copies and comparing with Keras...", flush=True)
    export = subprocess.run([sys.executable, os.path.abspath(__file__), "--export-child",
                             "--model", args.model, "--compare-dataset", args.compare_dataset],
                            cwd=REPO, capture_output=True, text=True, check=True)
    comparison = json.loads(export.stdout.strip().splitlines()[-1])
    print(json.dumps(comparison, indent=1))

    python, labels = sys.executable, args.model + ".labels.json"
    litert = [python, os.path.join(BENCH, "litert_classify.py")]
    output = os.path.join(BENCH, "data", "classified.png")
    configs = {
        "classify.py (Keras)": [python, "classify.py", "--model", args.model, "--labelbin",
                                args.labelbin, "--image", args.image, "--output", output],
        "litert float32, labels.json": litert + [float_path, labels, args.image],
        "litert float32, lb.pickle": litert + [float_path, labels, args.image,
                                               "--labelbin", args.labelbin],
        "litert int8, labels.json": litert + [int8_path, labels, args.image],
        "python: import numpy, PIL": [python, "-c", "import numpy, PIL.Image"],
        "python: + load lb.pickle": [python, "-c", "from pyimagesearch.persistence import "
                                     f"load_label_binarizer as l; l({args.labelbin!r})"],
    }
    samples = {name: [] for name in configs}
    for _ in range(args.runs):
        for name, command in configs.items():
            samples[name].append(timed(command))
    baseline = None
    print(f"\n{'configuration':<30} {'wall s':>8} {'ratio':>7} {'peak MiB':>9} {'ratio':>7}  output")
    results = {}
    for name, runs in samples.items():
        wall = statistics.median(r[0] for r in runs)
        rss = statistics.median(r[1] for r in runs)
        baseline = baseline or (wall, rss)
        results[name] = {"wall_median": wall, "rss_median_mib": rss,
                         "walls": [round(r[0], 3) for r in runs]}
        print(f"{name:<30} {wall:8.3f} {wall / baseline[0]:6.2f}x {rss:9.0f} "
              f"{rss / baseline[1]:6.2f}x  {runs[0][2][:40]}")
    folder = os.path.join(BENCH, "results")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, time.strftime("classify-%Y%m%d-%H%M%S.json"))
    with open(path, "w") as handle:
        json.dump({"arguments": vars(args), "comparison": comparison, "results": results},
                  handle, indent=1)
    print(f"\n[bench] results in {path}")


if __name__ == "__main__":
    main()
