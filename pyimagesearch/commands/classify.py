"""Classify images with a trained model and write annotated copies.

    python classify.py --model pokedex.model --labelbin lb.pickle --image examples/charmander.png
    python classify.py -m pokedex.model -l lb.pickle -i examples/ --top-k 3 --json
"""

import contextlib
import json
import os
import sys

from pyimagesearch import cli


def parse_args(argv=None):
    parser = cli.ArgumentParser(
        description="Classify images with a model trained by train.py; print the label and "
                    "probability of each and write copies with them drawn on.")
    paths = parser.add_argument_group("inputs and outputs")
    paths.add_argument("-m", "--model", required=True, help="trained model file")
    paths.add_argument("-l", "--labelbin", required=True, help="pickled LabelBinarizer")
    paths.add_argument("-i", "--image", required=True,
                       help="an image file, a folder (searched recursively) or a quoted glob "
                            "pattern such as 'photos/*.jpg'")
    paths.add_argument("-o", "--output", default=None,
                       help="one image: the annotated copy (default: output/<image name>"
                            "_classified.png); several: a folder for them (default: output/). "
                            "Inputs are never overwritten")
    answer = parser.add_argument_group("answers")
    answer.add_argument("--top-k", type=cli.top_k, default=1,
                        help="print the K most likely labels (default: %(default)s)")
    answer.add_argument("--min-confidence", type=cli.probability, default=0.0,
                        help="answer 'unknown' when the best probability is below this, "
                             "0-1 (default: %(default)s)")
    answer.add_argument("--no-unknown", dest="unknown", action="store_false",
                        help="never answer 'unknown' for images unlike the training images "
                             "(a model from train.py calls an image unknown when its features are "
                             "farther from every class than 95%% of its validation images)")
    answer.add_argument("--json", action="store_true",
                        help="print one JSON object per image on stdout (path, label, labels, "
                             "probabilities, true_label, correct); messages go to stderr")
    answer.add_argument("--batch-size", type=cli.batch_size, default=32,
                        help="images per model call (default: %(default)s)")
    answer.add_argument("--backend", choices=("auto", "keras"), default="auto",
                        help="'auto' runs train.py's LiteRT copy (MODEL.tflite) when the run id "
                             "inside it is the model's and the label file is the one recorded, "
                             "without TensorFlow (~0.3 s a start); "
                             "'keras' always loads the Keras model (default: %(default)s)")
    cli.add_input_flags(answer)
    answer.add_argument("--show", action="store_true",
                        help="also open a window with each result when a display is available")
    return parser.parse_args(argv)


def default_output(image_path):
    from pyimagesearch.annotate import output_name

    return os.path.join("output", output_name(image_path))


def main(argv=None):
    args = parse_args(argv)
    for flag, path in (("--model", args.model), ("--labelbin", args.labelbin)):
        problem = cli.file_problem(path)
        if problem:
            cli.fail("classify.py", f"{flag}: {problem}")
    from pyimagesearch import imageio, inference
    from pyimagesearch.imageio import UnreadableImageError, open_rgb

    info = sys.stderr if args.json else sys.stdout  # keep stdout pure JSON with --json
    single = os.path.isfile(args.image)
    skipped = []

    def skip(path, message):
        skipped.append(cli.printable(path))
        print(f"[WARNING] skipped {cli.printable(message)}", file=sys.stderr)

    if single:
        output = args.output or default_output(args.image)
        if os.path.isdir(output):
            output = os.path.join(output, os.path.basename(default_output(args.image)))
        if os.path.exists(output) and os.path.samefile(output, args.image):
            cli.fail("classify.py", f"--output {output} is the input image; choose another path")
        from pyimagesearch.annotate import check_output_extension

        problem = check_output_extension(output)
        if problem:
            cli.fail("classify.py", f"--output: {problem}")
        try:  # a bad image is reported before TensorFlow's slow start
            open_rgb(args.image, 8)
        except UnreadableImageError as error:
            cli.fail("classify.py", f"--image: {error}")
        images, outputs = [args.image], {args.image: output}
    else:
        folder = args.output or "output"
        if os.path.exists(folder) and not os.path.isdir(folder):
            cli.fail("classify.py", f"--output {folder}: is a file; several images need a folder")
        if not os.path.isdir(args.image) and not any(c in args.image for c in "*?["):
            cli.fail("classify.py", f"--image: {cli.file_problem(args.image)}")
        found = imageio.find_images(args.image, exclude=folder)
        if not found:
            cli.fail("classify.py", f"--image: no files found in or matching {args.image}")
        images = imageio.screen_images(found, skip)
        if not images:
            cli.fail("classify.py", f"--image: none of the {len(found)} file(s) in "
                                    f"{args.image} is a readable image")
        from pyimagesearch.annotate import output_paths

        outputs = dict(zip(images, output_paths(images, folder)))

    from pyimagesearch import annotate, persistence, results

    try:
        classifier = inference.Classifier(args.model, args.labelbin, backend=args.backend,
                                          num_images=len(images),
                                          channel_order=args.channel_order,
                                          input_scale=args.input_scale)
    except persistence.ArtifactError as error:
        cli.fail("classify.py", str(error))

    answered = []
    predictions = contextlib.closing(classifier.predict_files(images, args.batch_size, skip))
    with predictions as answers:  # its decoding threads end even if a write fails below
        for path, probabilities, unknown in answers:
            result = results.describe(path, probabilities, classifier.class_names,
                                      args.top_k, args.min_confidence,
                                      unknown=unknown and args.unknown)
            lines = results.text_lines(result)
            result["output"] = outputs[path]
            if args.json:
                print(json.dumps(result), flush=True)
            elif single:
                print("\n".join([lines[0]] + ["  " + line for line in lines[1:]]))
            else:
                print("\n".join([f"{cli.printable(path)}: {lines[0]}"]
                                 + ["    " + line for line in lines[1:]]))
            color = "unknown" if result["label"] == results.UNKNOWN else result["correct"]
            try:
                annotated = annotate.annotated_copy(path, lines, color)
                annotate.write_image(result["output"], annotated)
            except UnreadableImageError as error:  # changed on disk since it was classified
                skip(path, str(error))
                continue
            except OSError as error:
                cli.fail("classify.py", f"cannot write {result['output']}: {error}", code=1)
            answered.append(result)
            if args.show and not annotate.show(annotated):
                print("[INFO] --show: no display available, skipped the window", file=sys.stderr)
                args.show = False

    if single:
        if not answered:  # it decoded before TensorFlow started, then failed
            cli.fail("classify.py", f"--image: {args.image} could not be read")
        print(f"[INFO] annotated image written to {output}", file=info)
    else:
        print(results.summary(answered, skipped, args.top_k), file=info)
        if answered:
            print(f"[INFO] {len(answered)} annotated image(s) written to {folder}", file=info)
        else:
            cli.fail("classify.py", "no image could be classified")


if __name__ == "__main__":
    sys.exit(cli.run(main))
