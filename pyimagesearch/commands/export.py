"""Export a model trained by train.py for phones and other runtimes.

    python export.py --model pokedex.model --labelbin lb.pickle --format coreml
    python export.py -m pokedex.model -l lb.pickle --format litert --quantize int8 --dataset dataset
    python export.py -m pokedex.model -l lb.pickle --format all --dataset dataset --output exports/
"""

import os
import sys
import time

from pyimagesearch import cli
from pyimagesearch.exporters import FORMATS, QUANTIZATIONS


def parse_args(argv=None):
    parser = cli.ArgumentParser(
        prog="export.py",
        description="Export a model trained by train.py to Core ML, ONNX, a TensorFlow "
                    "SavedModel or LiteRT, with its class names and pixel format inside; "
                    "with --dataset, check each export against the Keras model.")
    paths = parser.add_argument_group("inputs and outputs")
    paths.add_argument("-m", "--model", required=True, help="model file written by train.py")
    paths.add_argument("-l", "--labelbin", required=True, help="its lb.pickle")
    paths.add_argument("-f", "--format", required=True, choices=FORMATS + ("all",),
                       help="coreml (.mlpackage for iOS/macOS), onnx (.onnx for onnxruntime), "
                            "saved_model (folder for TF Serving), litert (.tflite), or all four")
    paths.add_argument("-o", "--output", default=None,
                       help="the file or folder to write (default: beside the model, "
                            "MODEL.mlpackage, MODEL.onnx, MODEL.saved_model, "
                            "MODEL.<float32|float16|int8>.tflite); with --format all, a folder "
                            "for all of them (default: the model's folder)")
    options = parser.add_argument_group("options")
    options.add_argument("--quantize", choices=QUANTIZATIONS, default="none",
                         help="litert weights: none (float32), float16 (half the size) or int8 "
                              "(full integer, a quarter; calibrated on training images from "
                              "--dataset) (default: %(default)s)")
    options.add_argument("-d", "--dataset", default=None,
                         help="the dataset the model was trained on: int8 calibrates on its "
                              "training images, and every export is checked on its held-out "
                              "images (size, load time, latency, agreement, accuracy)")
    options.add_argument("--cache-dir", default=None,
                         help="decoded-image cache (default: $POKEDEX_CACHE_DIR or MODEL.cache, "
                              "shared with train.py)")
    return parser.parse_args(argv)


def planned_outputs(args):
    """[(format, output path)] for the flags, checked before anything slow starts."""
    from pyimagesearch import exporters
    from pyimagesearch.exporters import outputs

    formats = FORMATS if args.format == "all" else (args.format,)
    if args.format == "all":
        folder = args.output or os.path.dirname(os.path.abspath(args.model))
        if os.path.exists(folder) and not os.path.isdir(folder):
            cli.fail("export.py", f"--output {folder}: is a file; --format all needs a folder")
        base = os.path.join(folder, os.path.basename(args.model))
        plan = [(name, exporters.default_output(base, name, args.quantize)) for name in formats]
    else:
        plan = [(args.format, args.output
                 or exporters.default_output(args.model, args.format, args.quantize))]
    for name, path in plan:
        problem = outputs.output_problem(path, name)
        if problem:
            cli.fail("export.py", f"--output: {problem}")
    return plan


def main(argv=None):
    args = parse_args(argv)
    from pyimagesearch import exporters, persistence

    if cli.file_problem(args.labelbin):
        cli.fail("export.py", f"--labelbin: {cli.file_problem(args.labelbin)}")
    if args.dataset is not None and not os.path.isdir(args.dataset):
        cli.fail("export.py", f"--dataset: folder not found: {args.dataset}")
    plan = planned_outputs(args)
    uses_litert = any(name == "litert" for name, _ in plan)
    if uses_litert and args.quantize == "int8" and args.dataset is None:
        cli.fail("export.py", "--quantize int8 calibrates on training images: add --dataset "
                              "FOLDER (the dataset the model was trained on)")
    try:  # cheap checks first (no TensorFlow): a wrong file or missing converter fails at once
        description = exporters.read_source_description(args.model, args.labelbin)
        exporters.check_converters([name for name, _ in plan])
        parts = None
        if args.dataset is not None:
            from pyimagesearch.exporters import measure

            measure.check_dataset(description, args.dataset)
        source = exporters.load_source(args.model, args.labelbin)
        if args.dataset is not None:
            parts = measure.dataset_parts(source, args.dataset, args.cache_dir)
        calibration = (measure.calibration_images(parts, exporters.CALIBRATION_IMAGES)
                       if parts is not None and uses_litert and args.quantize == "int8"
                       else None)
        written = []
        for name, path in plan:
            started = time.monotonic()
            exporters.export(source, name, path, args.quantize, calibration)
            written.append((name, path, args.quantize))
            print(f"[INFO] {name}: wrote {path} in {time.monotonic() - started:.1f} s")
            if name == "coreml":  # it cannot run here: check what it declares instead
                from pyimagesearch.exporters.coreml import check_package

                print(f"[INFO] coreml: {check_package(path, source)}")
    except (exporters.ExportError, persistence.ArtifactError) as error:
        cli.fail("export.py", str(error))
    except OSError as error:  # a full disk or a folder made read-only meanwhile
        cli.fail("export.py", f"cannot write the export: {error}", code=1)
    if parts is not None:
        check(source, parts, written)
    else:
        print("[INFO] add --dataset DATASET to check the exports against the Keras model "
              "on its held-out images")


def check(source, parts, written):
    """Print the table: each export against the Keras model on the held-out images."""
    from pyimagesearch.exporters import measure

    rows, reference = measure.compare_exports(source, parts, written)
    print(f"[INFO] on the {len(parts.held_out)} {parts.held_out_name} images of the model's "
          "dataset (split again from the seed recorded in the model):")
    print("\n".join(measure.format_rows(rows, reference_accuracy=reference.accuracy)))
    if any(name == "coreml" for name, _, _ in written):
        print("[INFO] coreml: its answers need macOS, so they are not in the table")


if __name__ == "__main__":
    sys.exit(cli.run(main))
