"""The Python API: load a trained model once, then classify paths, folders, PIL images or arrays.

    from pyimagesearch import Pokedex

    dex = Pokedex.load("pokedex.model", "lb.pickle")
    dex.classify("examples/pikachu.png")["label"]          # 'pikachu'
    dex.classify_folder("examples/")                       # [{...}, ...], one dict per image
    dex.classify_image(Image.open("photo.jpg"))            # a PIL image or a uint8 array

Each answer is the dict `classify.py --json` prints (less its "output", the
annotated copy, which only classify.py writes): label, probability, top-k
labels and probabilities, unknown_reason, true_label, correct. The work is
done by `inference.Classifier` (LiteRT copy or Keras model, confidence head,
channel order and scale from the model's description) and the wording by
`results.describe`, the same code classify.py runs, so the answers are the same.
"""

import contextlib
import os
import sys

import numpy as np

from pyimagesearch import imageio, inference, results


def _stderr(line):
    print(line, file=sys.stderr)


class Pokedex:
    """A trained model and its class names, loaded once; every `classify*` call reuses them.

    `top_k`, `min_confidence` and `unknown` mean what classify.py's --top-k,
    --min-confidence and --no-unknown (unknown=False) mean, and can be
    changed on the object between calls.
    """

    def __init__(self, classifier, *, top_k=1, min_confidence=0.0, unknown=True, log=_stderr):
        if top_k < 1:
            raise ValueError(f"top_k must be 1 or more, e.g. 3 (got {top_k})")
        if not 0.0 <= min_confidence <= 1.0:
            raise ValueError(f"min_confidence must be between 0 and 1, e.g. 0.6 "
                             f"(got {min_confidence})")
        self.classifier = classifier
        self.top_k, self.min_confidence, self.unknown = top_k, min_confidence, unknown
        self.log = log

    @classmethod
    def load(cls, model, labelbin, *, backend="auto", top_k=1, min_confidence=0.0,
             unknown=True, channel_order="auto", input_scale="auto", log=_stderr):
        """Load `model` (train.py's model, or a .tflite/.onnx from export.py) and its `labelbin`.

        The label file is required, as in classify.py: the model records the
        label file's sha256, not where it is. backend "auto" runs the model's
        LiteRT copy when it provably belongs to it, "keras" always loads Keras.
        Raises persistence.ArtifactError (a ValueError) naming a file that does
        not fit; `log` gets the one-line notes classify.py prints on stderr.
        """
        classifier = inference.Classifier(model, labelbin, backend=backend,
                                          channel_order=channel_order,
                                          input_scale=input_scale, log=log)
        return cls(classifier, top_k=top_k, min_confidence=min_confidence, unknown=unknown,
                   log=log)

    @property
    def class_names(self):
        """The classes, in the model's output order."""
        return list(self.classifier.class_names)

    @property
    def image_size(self):
        """Images are resized to this many pixels square before the model."""
        return self.classifier.image_size

    def classify(self, path):
        """One image file's answer (a dict); raises imageio.UnreadableImageError if unreadable."""
        skipped = []
        answers = self._answer_files([path], on_skip=lambda _, message: skipped.append(message))
        if skipped:
            raise imageio.UnreadableImageError(skipped[0])
        return answers[0]

    def classify_folder(self, folder, batch_size=32):
        """Answers for every image in a folder (recursively) or a glob such as 'photos/*.jpg'.

        Sorted by path; files that are not readable images are left out with
        one line each to `log`, as classify.py does.
        """
        folder = os.fspath(folder)
        if not os.path.isdir(folder) and not any(c in folder for c in "*?["):
            raise FileNotFoundError(f"{folder}: no such folder (give a folder or a glob)")
        found = imageio.find_images(folder)
        return self._answer_files(imageio.screen_images(found, self._skip), batch_size,
                                  self._skip)

    def classify_image(self, image, name="image"):
        """The answer for a PIL image or a uint8 array (H, W), (H, W, 3) RGB or (H, W, 4) RGBA.

        The image is prepared exactly as a file is (imageio.prepare_image:
        upright, 8-bit RGB, transparency onto white, bilinear resize), so
        `Image.open(path)` gets the answer `path` gets. `name` is the answer's
        "path" (a class named in it fills true_label and correct).
        """
        return self.classify_images([image], names=[name])[0]

    def classify_images(self, images, names=None, batch_size=32):
        """Answers for several in-memory images (see classify_image), a model call a batch."""
        names = list(names) if names is not None else [f"image {i}" for i in range(len(images))]
        if len(names) != len(images):
            raise ValueError(f"names: {len(names)} names for {len(images)} images")
        size = self.classifier.image_size
        pixels = [imageio.prepare_image(image, size, name) for image, name in zip(images, names)]
        if not pixels:
            return []
        probabilities, unknown = self.classifier.answer_arrays(np.stack(pixels), batch_size)
        flags = [None] * len(names) if unknown is None else [bool(flag) for flag in unknown]
        return [self._describe(name, p, flag) for name, p, flag in zip(names, probabilities, flags)]

    def _answer_files(self, paths, batch_size=32, on_skip=None):
        answers = self.classifier.predict_files(paths, batch_size, on_skip)
        with contextlib.closing(answers):  # its decoding threads end even on an error
            return [self._describe(path, probabilities, unknown)
                    for path, probabilities, unknown in answers]

    def _describe(self, path, probabilities, unknown):
        return results.describe(path, probabilities, self.classifier.class_names, self.top_k,
                                self.min_confidence, unknown=unknown and self.unknown)

    def _skip(self, path, message):
        self.log(f"[WARNING] skipped {message}")

    def __repr__(self):
        return (f"Pokedex({len(self.class_names)} classes, {self.image_size} px, "
                f"backend={self.classifier.backend!r})")
