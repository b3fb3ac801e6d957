"""Every export of a trained model against the Keras model: size, load, latency, agreement, accuracy.

    python train.py --dataset dataset --model /tmp/exp/pokedex.model --labelbin /tmp/exp/lb.pickle --epochs 5
    python bench/bench_export.py --model /tmp/exp/pokedex.model --labelbin /tmp/exp/lb.pickle --dataset dataset

Exports the model to Core ML, ONNX, a SavedModel and LiteRT float32 / float16
/ int8 (int8 calibrated on up to 300 training images) with the same functions
export.py calls, then, in this one process, loads each (timed), runs it on
the held-out images of the model's dataset (its split made again from the
seed and shares recorded in the model: the test part, else validation) and
prints one Markdown row per format: file size, load time, median one-image
latency, largest probability difference from Keras, accuracy, and the share
of images whose top class is Keras's. Core ML gets its size only (its
answers need macOS). Exports go to --output (default: a temporary folder).
"""

import argparse
import os
import platform
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

VARIANTS = [("coreml", "none"), ("onnx", "none"), ("saved_model", "none"),
            ("litert", "none"), ("litert", "float16"), ("litert", "int8")]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="a model train.py saved")
    parser.add_argument("--labelbin", required=True, help="its lb.pickle")
    parser.add_argument("--dataset", required=True, help="the dataset it was trained on")
    parser.add_argument("--output", default=None, help="folder for the exports (default: temporary)")
    parser.add_argument("--latency-images", type=int, default=50,
                        help="single-image calls timed per format (default: %(default)s)")
    args = parser.parse_args()

    from pyimagesearch import exporters
    from pyimagesearch.exporters import measure

    source = exporters.load_source(args.model, args.labelbin)
    parts = measure.dataset_parts(source, args.dataset, log=lambda line: None)
    calibration = measure.calibration_images(parts, exporters.CALIBRATION_IMAGES)
    with tempfile.TemporaryDirectory() as temporary:
        folder = args.output or temporary
        base = os.path.join(folder, os.path.basename(args.model))
        written, seconds = [], {}
        for name, quantize in VARIANTS:
            path = exporters.default_output(base, name, quantize)
            started = time.perf_counter()
            exporters.export(source, name, path, quantize, calibration)
            seconds[path] = time.perf_counter() - started
            written.append((name, path, quantize))
        rows, reference = measure.compare_exports(source, parts, written,
                                                  args.latency_images)
        print(f"# {os.path.basename(args.model)}: {source.image_size} px, "
              f"{len(source.class_names)} classes; {len(parts.held_out)} {parts.held_out_name} "
              f"images of {args.dataset}; int8 calibrated on {len(calibration)} training images")
        print(f"# {platform.machine()}, {os.cpu_count()} CPUs, load average "
              f"{' '.join(f'{value:.2f}' for value in os.getloadavg())}; export seconds: "
              + ", ".join(f"{os.path.basename(path)} {value:.1f}"
                          for path, value in seconds.items()))
        print("\n".join(measure.format_rows(rows, reference_accuracy=reference.accuracy)))


if __name__ == "__main__":
    main()
