"""Loading a trained classifier with its labels, and running it on images."""

import json
import os

import numpy as np

from pyimagesearch import persistence
from pyimagesearch.imageio import UnreadableImageError, load_image

UNKNOWN = "unknown"  # the answer below --min-confidence


class Classifier:
    """A loaded model plus its class names; `predict` takes image file paths.

    When train.py's LiteRT copy (`<model>.tflite`) is present and provably
    belongs to this model and label file (`<model>.litert.json` records the
    model's size and mtime and the label file's sha256), it runs that with
    ai_edge_litert and never imports TensorFlow or scikit-learn: ~0.3 s and
    ~120 MiB for one image instead of ~9 s and ~1 GB. Otherwise, or with
    backend="keras", it loads the Keras model. `self.backend` says which.
    """

    def __init__(self, model_path, labelbin_path, backend="auto", num_images=None):
        fast = _matching_litert(model_path, labelbin_path) if backend != "keras" else None
        if fast is not None:
            from pyimagesearch.litert import LiteRTClassifier

            self.backend, self.class_names = "litert", fast["class_names"]
            self.runner = LiteRTClassifier(fast["tflite"],
                                           few_images=num_images is not None and num_images <= 2)
            self.image_size, self.scale = self.runner.image_size, 1.0
            return
        from pyimagesearch.cli import import_tensorflow_quietly

        import_tensorflow_quietly()
        self.backend = "keras"
        label_binarizer = persistence.load_label_binarizer(labelbin_path)
        self.class_names = [str(name) for name in label_binarizer.classes_]
        self.model = persistence.load_model(model_path)
        shape = self.model.input_shape  # (None, H, W, 3)
        outputs = self.model.output_shape[-1]
        if len(shape) != 4 or shape[1] != shape[2] or shape[3] != 3:
            raise persistence.ArtifactError(
                f"{model_path}: expected a square RGB image model, input shape is {shape}")
        if outputs != len(self.class_names):
            raise persistence.ArtifactError(
                f"{labelbin_path} has {len(self.class_names)} classes but {model_path} "
                f"outputs {outputs}: they come from different training runs")
        self.image_size = int(shape[1])
        # Models from train.py rescale inside (a Rescaling layer); tutorial-era
        # .h5 models expect pixels already scaled to [0, 1].
        import keras

        self.scale = 1.0 if _has_rescaling(self.model, keras) else 1.0 / 255
        _check_sidecar(model_path, self.class_names, labelbin_path)

    def predict(self, paths):
        """Probabilities (N, num_classes) for image files (load errors propagate)."""
        return self.predict_arrays(np.stack([load_image(path, self.image_size)
                                             for path in paths]))

    def predict_arrays(self, images, batch_size=32):
        """Probabilities (N, num_classes) for uint8 images (N, S, S, 3), one model call per batch.

        `images` may be a memory-mapped array (the dataset cache): only one
        batch at a time is turned into floats.
        """
        outputs = [np.zeros((0, len(self.class_names)))]
        for start in range(0, len(images), batch_size):
            batch = np.asarray(images[start:start + batch_size], dtype=np.uint8)
            if self.backend == "litert":
                outputs.append(self.runner.predict(batch))
            else:
                inputs = batch.astype(np.float32) * self.scale
                outputs.append(np.asarray(self.model.predict_on_batch(inputs), dtype=np.float64))
        return np.concatenate(outputs)

    def predict_files(self, paths, batch_size=32, on_skip=None):
        """Yield (path, probabilities) for each readable file, `batch_size` images per call.

        Files are decoded in parallel threads (PIL releases the GIL); an
        unreadable one is passed to `on_skip(path, message)` and left out.
        """
        decode = map  # one image (the common call): no thread pool to import or start
        if len(paths) > 1:
            from concurrent.futures import ThreadPoolExecutor

            from pyimagesearch.cli import available_cpus

            decode = ThreadPoolExecutor(max_workers=available_cpus()).map
        for start in range(0, len(paths), batch_size):
            chunk = paths[start:start + batch_size]
            loaded = list(decode(self._try_load, chunk))
            good = [(path, pixels) for path, pixels in zip(chunk, loaded)
                    if not isinstance(pixels, str)]
            for path, pixels in zip(chunk, loaded):
                if isinstance(pixels, str) and on_skip is not None:
                    on_skip(path, pixels)
            if good:
                probabilities = self.predict_arrays(np.stack([p for _, p in good]), batch_size)
                yield from zip([path for path, _ in good], probabilities)

    def _try_load(self, path):
        try:
            return load_image(path, self.image_size)
        except UnreadableImageError as error:
            return str(error)


def _matching_litert(model_path, labelbin_path):
    """The LiteRT sidecar's description if it matches both files, else None."""
    try:
        with open(persistence.sidecar_path(model_path, "litert")) as handle:
            info = json.load(handle)
        stat = os.stat(model_path)
        tflite = os.path.join(os.path.dirname(os.path.abspath(model_path)), info["tflite"])
        if (stat.st_size, stat.st_mtime_ns) != (info["model_size"], info["model_mtime_ns"]):
            return None  # the model was replaced or copied since; use it, not the old copy
        if os.path.getsize(tflite) != info["tflite_size"]:
            return None
        if persistence.file_sha256(labelbin_path) != info["labelbin_sha256"]:
            return None  # another label file: let the Keras path check it properly
        return {"tflite": tflite, "class_names": [str(c) for c in info["class_names"]]}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    except ImportError:
        return None


def _has_rescaling(model, keras):
    return any(isinstance(layer, keras.layers.Rescaling) for layer in model.layers[:2])


def _check_sidecar(model_path, class_names, labelbin_path):
    """If the model's own class list exists, it must match the label file's."""
    sidecar = persistence.sidecar_path(model_path, "labels")
    if not os.path.exists(sidecar):
        return
    try:
        with open(sidecar) as handle:
            saved = json.load(handle)
    except (OSError, ValueError):
        return
    if saved != class_names:
        raise persistence.ArtifactError(
            f"{labelbin_path} lists classes {class_names} but the model was trained on "
            f"{saved} ({sidecar}): they come from different training runs")


def top_k_labels(probabilities, class_names, k):
    """The k best (label, probability) pairs of one image, best first."""
    order = np.argsort(-np.asarray(probabilities), kind="stable")[:k]
    return [(class_names[i], float(probabilities[i])) for i in order]


def true_label_from_name(path, class_names):
    """The class named in the file name (longest match wins), or None."""
    name = os.path.basename(path).lower()
    matches = [c for c in class_names if c.lower() in name]
    return max(matches, key=len) if matches else None


def describe(path, probabilities, class_names, top_k=1, min_confidence=0.0):
    """One image's answer as a JSON-ready dict.

    `label` is the best class, or "unknown" when its probability is below
    `min_confidence`; `labels`/`probabilities` are the top-k, best first;
    `true_label` is the class named in the file name (None if none is), and
    `correct` whether `label` equals it (None when there is no true label).
    """
    best = top_k_labels(probabilities, class_names, max(1, top_k))
    label = best[0][0] if best[0][1] >= min_confidence else UNKNOWN
    truth = true_label_from_name(path, class_names)
    return {"path": os.fspath(path), "label": label, "probability": round(best[0][1], 6),
            "labels": [name for name, _ in best],
            "probabilities": [round(p, 6) for _, p in best],
            "true_label": truth, "correct": None if truth is None else label == truth}


def text_lines(result):
    """Human lines for a `describe` result: `charmander: 97.31% (correct)`, then top-k."""
    best, probability = result["labels"][0], result["probability"] * 100
    if result["label"] == UNKNOWN:
        head = f"{UNKNOWN} (best guess {best}: {probability:.2f}%)"
    else:
        verdict = {None: "", True: " (correct)", False: " (incorrect)"}[result["correct"]]
        head = f"{best}: {probability:.2f}%{verdict}"
    rest = [f"{rank}. {name}: {p * 100:.2f}%" for rank, (name, p) in
            enumerate(zip(result["labels"][1:], result["probabilities"][1:]), start=2)]
    return [head] + rest


def find_images(spec, exclude=None):
    """The files `--image` names: a folder (recursively, hidden folders left out) or a glob.

    Returns sorted paths; files inside the `exclude` folder (classify.py's
    output folder) are left out so earlier results are not classified again.
    """
    import glob

    if os.path.isdir(spec):
        roots = [spec]
    else:
        roots = sorted(glob.glob(spec, recursive=True))
    excluded = os.path.realpath(exclude) if exclude and os.path.isdir(exclude) else None
    found = []
    for root in roots:
        if os.path.isfile(root):
            found.append(root)
            continue
        for folder, subfolders, names in os.walk(root):
            subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
            # Only a sub-folder: `-i photos -o photos` still classifies photos/.
            if excluded and folder != root and os.path.realpath(folder) == excluded:
                subfolders[:] = []
                continue
            found.extend(os.path.join(folder, name) for name in sorted(names))
    return list(dict.fromkeys(found))  # a file matched twice is classified once


def screen_images(paths, on_skip):
    """Paths whose header Pillow recognises (cheap: nothing is decoded yet).

    Catches text files, .DS_Store and empty files before TensorFlow starts;
    truncated images are caught later, when they are decoded for prediction.
    """
    from PIL import Image

    from pyimagesearch.imageio import open_rgb

    kept = []
    for path in paths:
        try:
            with Image.open(path):
                pass
        except Exception:  # any failure: get the loader's own one-line reason
            try:
                open_rgb(path, 8)
            except UnreadableImageError as error:
                on_skip(path, str(error))
                continue
        kept.append(path)
    return kept


def summary(results, skipped, top_k=1, max_names=5):
    """One line for many images: counts, skipped names, accuracy where file names carry labels."""
    names = [os.path.basename(path) for path in skipped[:max_names]]
    if len(skipped) > max_names:
        names.append(f"and {len(skipped) - max_names} more")
    line = f"[INFO] classified {len(results)} image(s), skipped {len(skipped)}"
    line += f" ({', '.join(names)})" if names else ""
    labelled = [result for result in results if result["true_label"] is not None]
    if labelled:
        right = sum(result["correct"] for result in labelled)
        line += (f"; accuracy {right / len(labelled):.2%} ({right} of {len(labelled)} "
                 f"named after a class)")
        if top_k > 1:
            in_top = sum(result["true_label"] in result["labels"] for result in labelled)
            line += f", top-{top_k} accuracy {in_top / len(labelled):.2%}"
    unknown = sum(result["label"] == UNKNOWN for result in results)
    if unknown:
        line += f"; {unknown} unknown (below --min-confidence)"
    return line
