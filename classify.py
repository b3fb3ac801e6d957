"""Classify an image with a trained model and write an annotated copy.

    python classify.py --model pokedex.model --labelbin lb.pickle --image examples/charmander.png
"""

import os
import sys

from pyimagesearch import cli


def parse_args(argv=None):
    parser = cli.ArgumentParser(
        description="Classify an image with a model trained by train.py; print the label "
                    "and probability and write a copy of the image with them drawn on it.")
    parser.add_argument("-m", "--model", required=True, help="trained model file")
    parser.add_argument("-l", "--labelbin", required=True, help="pickled LabelBinarizer")
    parser.add_argument("-i", "--image", required=True, help="image file to classify")
    parser.add_argument("-o", "--output", default=None,
                        help="where to write the annotated copy (default: "
                             "output/<image name>_classified.png; never the input itself)")
    parser.add_argument("--show", action="store_true",
                        help="also open a window with the result when a display is available")
    return parser.parse_args(argv)


def default_output(image_path):
    stem = os.path.splitext(os.path.basename(image_path))[0]
    return os.path.join("output", f"{stem}_classified.png")


def main(argv=None):
    args = parse_args(argv)
    output = args.output or default_output(args.image)
    if os.path.exists(output) and os.path.samefile(output, args.image):
        cli.fail("classify.py", f"--output {output} is the input image; choose another path")
    for flag, path in (("--model", args.model), ("--labelbin", args.labelbin),
                       ("--image", args.image)):
        if not os.path.isfile(path):
            cli.fail("classify.py", f"{flag}: file not found: {path}")

    from pyimagesearch.imageio import UnreadableImageError, open_rgb

    try:  # a bad image is reported before TensorFlow's slow start
        open_rgb(args.image, 8)
    except UnreadableImageError as error:
        cli.fail("classify.py", f"--image: {error}")

    cli.import_tensorflow_quietly()
    from pyimagesearch import annotate, inference, persistence

    try:
        classifier = inference.Classifier(args.model, args.labelbin)
        probabilities = classifier.predict([args.image])[0]
    except (persistence.ArtifactError, UnreadableImageError) as error:
        cli.fail("classify.py", str(error))

    best = int(probabilities.argmax())
    label = classifier.class_names[best]
    truth = inference.true_label_from_name(args.image, classifier.class_names)
    correct = None if truth is None else truth == label
    verdict = "" if correct is None else (" (correct)" if correct else " (incorrect)")
    text = f"{label}: {probabilities[best] * 100:.2f}%{verdict}"
    print(text)

    try:
        annotate.write_image(output, annotate.annotated_copy(args.image, text, correct))
    except (OSError, UnreadableImageError) as error:
        cli.fail("classify.py", f"cannot write {output}: {error}", code=1)
    print(f"[INFO] annotated image written to {output}")
    if args.show and not annotate.show(annotate.annotated_copy(args.image, text, correct)):
        print("[INFO] --show: no display available, skipped the window", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(cli.run(main))
