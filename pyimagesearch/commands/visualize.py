"""Draw what a trained network sees: its first filters, feature maps, and Grad-CAM heat maps.

    python visualize.py --model pokedex.model --labelbin lb.pickle --image examples/pikachu.png
    python visualize.py -m pokedex.model -l lb.pickle -i examples/ --class pikachu -o sheets
"""

import os
import sys

from pyimagesearch import cli


def parse_args(argv=None):
    parser = cli.ArgumentParser(
        description="Draw the first conv layer's filters, each conv block's feature maps for "
                    "an image, and a Grad-CAM heat map of where the network found its answer. "
                    "A folder of images gives one sheet of heat maps.")
    parser.add_argument("-m", "--model", required=True,
                        help="the Keras model train.py wrote (.keras or .model)")
    parser.add_argument("-l", "--labelbin", required=True, help="pickled LabelBinarizer")
    parser.add_argument("-i", "--image", required=True,
                        help="an image file, or a folder (searched recursively) or quoted glob "
                             "for one sheet of heat maps")
    parser.add_argument("--class", dest="class_name", default=None, metavar="NAME",
                        help="draw the heat map for this class (default: the top prediction)")
    parser.add_argument("-o", "--output", default="visualize",
                        help="folder for the pictures (default: %(default)s)")
    cli.add_input_flags(parser)
    args = parser.parse_args(argv)
    _refuse_an_export(parser, args.model)
    for flag, path in (("-m/--model", args.model), ("-l/--labelbin", args.labelbin)):
        if cli.file_problem(path):
            parser.error(f"argument {flag}: {cli.file_problem(path)}")
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        parser.error(f"argument -o/--output: {args.output} is a file; give a folder")
    return args


# What an export is called when visualize.py is given one (runtimes.exported_kind's names).
EXPORT_KINDS = {"litert": "a LiteRT file", "onnx": "an ONNX file",
                "saved_model": "a SavedModel folder", "coreml": "a Core ML package"}


def _refuse_an_export(parser, model_path):
    """Exit 2 naming the Keras model when -m is an export: it has no layers to look into."""
    from pyimagesearch.exporters.runtimes import exported_kind  # cheap: reads 8 bytes

    kind = exported_kind(model_path)
    if kind is None:
        return
    keras_model = model_path[:-len(".tflite")] if model_path.endswith(".tflite") else None
    hint = (f", here {keras_model} (this is its LiteRT copy)"
            if keras_model and os.path.isfile(keras_model) else ", e.g. pokedex.model")
    parser.error(f"argument -m/--model: {model_path} is {EXPORT_KINDS[kind]}; visualize.py "
                 f"needs the Keras model train.py wrote (.keras or .model) to look at its "
                 f"layers{hint}")


def main(argv=None):
    args = parse_args(argv)
    from pyimagesearch import imageio, inference, persistence

    paths = imageio.find_images(args.image, exclude=args.output)
    if not paths:
        cli.fail("visualize.py", f"argument -i/--image: no files found at {args.image}")
    try:
        names = [str(c) for c in persistence.load_label_binarizer(args.labelbin).classes_]
    except persistence.ArtifactError as error:
        cli.fail("visualize.py", str(error))
    if args.class_name is not None and args.class_name not in names:
        cli.fail("visualize.py", f"argument --class: unknown class {args.class_name!r}; "
                                 f"the model knows: {', '.join(names)}")
    from pyimagesearch import visualize

    try:
        classifier = inference.Classifier(args.model, args.labelbin, backend="keras",
                                          channel_order=args.channel_order,
                                          input_scale=args.input_scale)
        written = visualize.write_pictures(classifier, paths, args.output, args.class_name)
    except persistence.ArtifactError as error:
        cli.fail("visualize.py", str(error))
    except OSError as error:
        cli.fail("visualize.py", f"cannot write the pictures: {error}", code=1)
    for path in written:
        print(f"[INFO] wrote {path}")


if __name__ == "__main__":
    sys.exit(cli.run(main))
