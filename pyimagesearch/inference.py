"""Loading a trained classifier with its labels, and running it on images."""

import json
import os
import sys

import numpy as np

from pyimagesearch import confidence, persistence
from pyimagesearch.imageio import UnreadableImageError, load_image
from pyimagesearch.imageio import find_images, screen_images  # noqa: F401 (moved there)

CHANNEL_ORDERS = ("RGB", "BGR")
INPUT_SCALES = {"1": 1.0, "1/255": 1.0 / 255}  # --input-scale: pixels 0-255 times this


def _stderr(line):
    print(line, file=sys.stderr)


class Classifier:
    """A loaded model plus its class names; `predict` takes image file paths.

    When train.py's LiteRT copy (`<model>.tflite`) is present and provably
    belongs to this model and label file (the run id inside the .tflite
    equals the one inside the model's description, and the label file's
    sha256 is the one recorded), it runs that with ai_edge_litert and never
    imports TensorFlow or scikit-learn: ~0.3 s and ~120 MiB for one image
    instead of ~9 s and ~1 GB. Otherwise, or with backend="keras", it loads
    the Keras model. `self.backend` says which; `log` gets one line for each
    fallback a user should know about.

    `model_path` may also be a file export.py wrote (.tflite or .onnx): it
    runs with its own runtime and the description inside it (backend
    "litert" or "onnx"), checked against the label file.

    Images always load as RGB uint8 (`imageio.load_image`); just before the
    model they are put in the channel order and scale the model was trained
    on (`self.channel_order`, `self.input_scale`): what its description
    records, the tutorial's BGR and 1/255 for a model without one, or the
    caller's `channel_order` ("rgb"/"bgr") and `input_scale` ("1"/"1/255").

    A model from this train.py also carries a confidence head (confidence.py:
    temperature and the unknown rule, fitted on its validation split). Then
    the Keras model and the LiteRT copy both return penultimate features,
    and `answer_arrays` gives calibrated probabilities plus which images are
    unknown; `self.head` is None for other models (raw probabilities, and
    only --min-confidence can say unknown).
    """

    head = None

    def __init__(self, model_path, labelbin_path, backend="auto", num_images=None,
                 channel_order="auto", input_scale="auto", log=_stderr):
        from pyimagesearch.exporters import runtimes  # cheap: no TensorFlow, no converter

        if runtimes.exported_kind(model_path) in ("litert", "onnx"):
            self.backend, self.runner, self.class_names, metadata = runtimes.classifier_parts(
                model_path, labelbin_path, few_images=num_images is not None and num_images <= 2)
            self.image_size = self.runner.image_size
            self._choose_input(metadata, None, channel_order, input_scale, model_path, log)
            return
        description = model_description(model_path)
        _warn_if_data_moved(description, log)
        fast = _matching_litert(model_path, labelbin_path, description, log) \
            if backend != "keras" else None
        if fast is not None and _start_litert(self, fast, num_images, log):
            self._choose_input(fast["metadata"], None, channel_order, input_scale, model_path,
                               log)
            self.head = _matching_head(confidence.read_head(model_path), self.runner.feature_sizes,
                                       len(self.class_names))
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
        _check_class_names(model_path, description, self.class_names, labelbin_path)
        import keras

        self._choose_input(description, _has_rescaling(self.model, keras), channel_order,
                           input_scale, model_path, log)
        head = confidence.read_head(model_path)
        if head is not None:
            from pyimagesearch.features import feature_model

            self._feature_model = feature_model(self.model)  # [probabilities, features...]
            self.head = _matching_head(head, tuple(int(output.shape[-1]) for output in
                                                   self._feature_model.outputs[1:]),
                                       len(self.class_names))

    def _choose_input(self, description, rescales, channel_order, input_scale, model_path, log):
        """Set channel_order and input_scale from the flags, else the description.

        `rescales`: whether the model's first layers include a Rescaling
        (None when it cannot be looked at: the LiteRT copy, always train.py's).
        """
        if description is None:
            # A model without this project's description: the tutorial trained on
            # cv2.imread's BGR pixels divided by 255 outside the model. One that
            # starts with its own Rescaling layer takes 0-255 already.
            recorded_order, recorded_scale = "BGR", 1.0 if rescales else 1.0 / 255
            if "auto" in (channel_order, input_scale):
                order = "BGR" if channel_order == "auto" else channel_order.upper()
                log(f"[INFO] {model_path} has no pokedex description (a tutorial-era model): "
                    f"feeding it {order} pixels times {_scale_text(input_scale, recorded_scale)}"
                    ", the tutorial's way; override with --channel-order rgb|bgr and "
                    "--input-scale 1|1/255")
        else:
            recorded_order = str(description.get("channel_order",
                                                 description.get("channels", "RGB"))).upper()
            recorded_scale = description.get("input_scale")
            if recorded_scale is None:  # an older train.py's description: look at the model
                recorded_scale = 1.0 if rescales in (True, None) else 1.0 / 255
        if recorded_order not in CHANNEL_ORDERS:
            recorded_order = "RGB"
        self.channel_order = recorded_order if channel_order == "auto" else channel_order.upper()
        self.input_scale = (float(recorded_scale) if input_scale == "auto"
                            else INPUT_SCALES[input_scale])

    def predict(self, paths):
        """Probabilities (N, num_classes) for image files (load errors propagate)."""
        return self.predict_arrays(np.stack([load_image(path, self.image_size)
                                             for path in paths]))

    def predict_arrays(self, images, batch_size=32):
        """Probabilities (N, num_classes) for uint8 RGB images (N, S, S, 3), a model call a batch.

        Calibrated (temperature-scaled) when the model has a confidence head.
        `images` may be a memory-mapped array (the dataset cache): only one
        batch at a time is turned into floats.
        """
        return self.answer_arrays(images, batch_size)[0]

    def answer_arrays(self, images, batch_size=32, scores=False):
        """(probabilities (N, C), unknown (N,) bool or None without a head) for uint8 RGB images.

        scores=True adds a third item, the unknown scores (N,) (None without a head).
        """
        probabilities, unknown = [np.zeros((0, len(self.class_names)))], [np.zeros(0, bool)]
        distances = [np.zeros(0)]
        for start in range(0, len(images), batch_size):
            batch = self._in_channel_order(images[start:start + batch_size])
            features = None
            if self.backend == "litert" and self.head is not None:
                raw, features = self.runner.run(batch, scale=self.input_scale)
            elif self.backend in ("litert", "onnx"):
                raw = self.runner.predict(batch, scale=self.input_scale)
            else:
                inputs = batch.astype(np.float32) * np.float32(self.input_scale)
                if self.head is not None:
                    features = self._feature_model.predict_on_batch(inputs)[1:]
                else:
                    raw = np.asarray(self.model.predict_on_batch(inputs), dtype=np.float64)
            if features is not None:
                from pyimagesearch.features import split_outputs

                raw, score, is_unknown = self.head.answer(*split_outputs(features))
                unknown.append(is_unknown)
                distances.append(score)
            probabilities.append(raw)
        head = self.head is not None
        answers = (np.concatenate(probabilities), np.concatenate(unknown) if head else None)
        return answers + ((np.concatenate(distances) if head else None,) if scores else ())

    def model_inputs(self, images):
        """uint8 RGB images (N, S, S, 3) as the Keras model takes them (visualize.py, Grad-CAM)."""
        return self._in_channel_order(images).astype(np.float32) * np.float32(self.input_scale)

    def _in_channel_order(self, images):
        batch = np.asarray(images, dtype=np.uint8)
        if self.channel_order == "BGR":
            batch = np.ascontiguousarray(batch[..., ::-1])  # (N, S, S, 3), RGB -> BGR
        return batch

    def predict_files(self, paths, batch_size=32, on_skip=None):
        """Yield (path, probabilities, unknown) for each readable file, `batch_size` images a call.

        `unknown`: True when the confidence head calls the image unknown (None without one).

        Files are decoded in parallel threads (PIL releases the GIL); an
        unreadable one is passed to `on_skip(path, message)` and left out.
        """
        if len(paths) <= 1:  # one image (the common call): no thread pool to import or start
            yield from self._predict_chunks(paths, batch_size, on_skip, map)
            return
        from concurrent.futures import ThreadPoolExecutor

        from pyimagesearch.cli import available_cpus

        # Shut down however the caller stops: exhausted, closed early, or an error.
        with ThreadPoolExecutor(max_workers=available_cpus()) as pool:
            yield from self._predict_chunks(paths, batch_size, on_skip, pool.map)

    def _predict_chunks(self, paths, batch_size, on_skip, decode):
        for start in range(0, len(paths), batch_size):
            chunk = paths[start:start + batch_size]
            loaded = list(decode(self._try_load, chunk))
            good = [(path, pixels) for path, pixels in zip(chunk, loaded)
                    if not isinstance(pixels, str)]
            for path, pixels in zip(chunk, loaded):
                if isinstance(pixels, str) and on_skip is not None:
                    on_skip(path, pixels)
            if good:
                probabilities, unknown = self.answer_arrays(np.stack([p for _, p in good]),
                                                            batch_size)
                flags = [None] * len(good) if unknown is None else [bool(u) for u in unknown]
                yield from zip([path for path, _ in good], probabilities, flags)

    def _try_load(self, path):
        try:
            return load_image(path, self.image_size)
        except UnreadableImageError as error:
            return str(error)


def _scale_text(input_scale, recorded_scale):
    if input_scale != "auto":
        return input_scale
    return "1" if recorded_scale == 1.0 else "1/255"


def model_description(model_path):
    """What train.py recorded about a model, or None for a model from elsewhere.

    The description inside the .keras file comes first; models from an
    older train.py have it beside them (`<model>.settings.json`, or only the
    class list `<model>.labels.json`: channels RGB, scale read off the model).
    """
    description = persistence.read_description(model_path)
    if description is not None:
        return description
    for kind in ("settings", "labels"):
        try:
            with open(persistence.sidecar_path(model_path, kind)) as handle:
                saved = json.load(handle)
        except (OSError, ValueError):
            continue
        if isinstance(saved, dict) and kind == "settings":
            return {key: saved[key] for key in ("class_names", "image_size", "channels",
                                                "channel_order", "input_scale") if key in saved}
        if isinstance(saved, list) and kind == "labels":
            return {"class_names": saved, "channel_order": "RGB"}
    return None


def _matching_litert(model_path, labelbin_path, description, log):
    """`<model>.tflite` and its metadata if its run id and label file match the model's, else None.

    A copy that is missing is passed over quietly; one that belongs to another
    run or cannot be read gets one line from `log`, naming the file.
    """
    from pyimagesearch import litert  # no TensorFlow: struct and mmap only

    tflite = f"{model_path}.tflite"
    if not os.path.isfile(tflite):
        return None
    fallback = "; using the Keras model instead"
    run_id = (description or {}).get("run_id")
    if not run_id:
        log(f"[INFO] {tflite} is not used: {model_path} carries no run id to tie it to "
            f"(saved by an older train.py or elsewhere){fallback}")
        return None
    try:
        metadata = litert.read_metadata(tflite)
    except (OSError, litert.LiteRTFileError) as error:
        log(f"[WARNING] {error}{fallback}")
        return None
    if metadata is None or metadata.get("run_id") != run_id:
        log(f"[INFO] {tflite} is not used: it comes from another training run than "
            f"{model_path} (run id {(metadata or {}).get('run_id')} vs {run_id}){fallback}")
        return None
    try:
        labels_match = persistence.file_sha256(labelbin_path) == metadata.get("labelbin_sha256")
    except OSError:
        labels_match = False
    if not labels_match:
        return None  # another label file: let the Keras path check it properly
    if not isinstance(metadata.get("class_names"), list):
        log(f"[WARNING] {tflite}: its metadata lists no class names{fallback}")
        return None
    return {"tflite": tflite, "metadata": metadata}


def _start_litert(classifier, fast, num_images, log):
    """Set `classifier` up to run the LiteRT copy; False (after one line) if it cannot."""
    fallback = "; using the Keras model instead"
    try:
        from pyimagesearch.litert import LiteRTClassifier

        runner = LiteRTClassifier(fast["tflite"],
                                  few_images=num_images is not None and num_images <= 2)
    except ImportError:
        log(f"[INFO] ai-edge-litert is not installed, so {fast['tflite']} cannot run "
            f"(pip install ai-edge-litert for a ~0.3 s start){fallback}")
        return False
    except Exception as error:  # the interpreter raises ValueError/RuntimeError on bad files
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
        log(f"[WARNING] {fast['tflite']}: LiteRT cannot load it ({type(error).__name__}: "
            f"{reason}){fallback}")
        return False
    class_names = [str(name) for name in fast["metadata"]["class_names"]]
    if runner.num_classes != len(class_names):
        log(f"[WARNING] {fast['tflite']}: outputs {runner.num_classes} classes but its "
            f"metadata lists {len(class_names)}{fallback}")
        return False
    classifier.backend, classifier.class_names = "litert", class_names
    classifier.runner, classifier.image_size = runner, runner.image_size
    return True


def _warn_if_data_moved(description, log):
    """One line when the training folder recorded in the description changed since training."""
    recorded = (description or {}).get("data_fingerprint")
    if recorded:
        from pyimagesearch import drift

        line = drift.dataset_changes(recorded)
        if line:
            log(line)


def _matching_head(head, output_sizes, num_classes):
    """`head` if the backend's feature outputs have its sizes, else None.

    output_sizes: the sizes of the outputs after the probabilities (penultimate,
    then the pooled feature map where the network has one).
    """
    if head is None or head.kernel.shape[1] != num_classes or not output_sizes:
        return None
    penultimate = output_sizes[0]
    distance = output_sizes[1] if len(output_sizes) > 1 else penultimate
    return head if head.feature_sizes == (penultimate, distance) else None


def _has_rescaling(model, keras):
    return any(isinstance(layer, keras.layers.Rescaling) for layer in model.layers[:2])


def _check_class_names(model_path, description, class_names, labelbin_path):
    """If the model records its own class list, it must match the label file's."""
    saved = (description or {}).get("class_names")
    if saved is None or [str(name) for name in saved] == class_names:
        return
    raise persistence.ArtifactError(
        f"{labelbin_path} lists classes {class_names} but {model_path} was trained on "
        f"{list(saved)}: they come from different training runs")

