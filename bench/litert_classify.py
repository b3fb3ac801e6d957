"""Minimal LiteRT classification of one image: the cold-start path classify.py could take.

    python bench/litert_classify.py MODEL.tflite CLASS_NAMES.json IMAGE [--labelbin lb.pickle]

Python start, class names from train.py's `<model>.labels.json` sidecar (or,
with --labelbin, from lb.pickle through the project's safe unpickler, which
imports scikit-learn), one image through pyimagesearch.imageio.load_image,
one LiteRT invoke. TensorFlow is never imported; the script checks that.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pyimagesearch.imageio import load_image  # noqa: E402
from pyimagesearch.litert import LiteRTClassifier  # noqa: E402


def main():
    model_path, labels_path, image_path = sys.argv[1:4]
    if "--labelbin" in sys.argv:
        from pyimagesearch.persistence import load_label_binarizer

        labelbin = sys.argv[sys.argv.index("--labelbin") + 1]
        class_names = [str(name) for name in load_label_binarizer(labelbin).classes_]
    else:
        with open(labels_path) as handle:
            class_names = json.load(handle)
    classifier = LiteRTClassifier(model_path)
    probabilities = classifier.predict(load_image(image_path, classifier.image_size)[None])[0]
    best = int(probabilities.argmax())
    print(f"{class_names[best]}: {probabilities[best] * 100:.2f}%")
    if "tensorflow" in sys.modules:
        sys.exit("tensorflow was imported")


if __name__ == "__main__":
    main()
