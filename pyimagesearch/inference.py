"""Loading a trained classifier with its labels, and running it on images."""

import json
import os

import numpy as np

from pyimagesearch import persistence
from pyimagesearch.imageio import load_image


class Classifier:
    """A loaded model plus its class names; `predict` takes image file paths."""

    def __init__(self, model_path, labelbin_path):
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
        batch = np.stack([load_image(path, self.image_size) for path in paths])
        inputs = batch.astype(np.float32) * self.scale
        return np.asarray(self.model.predict_on_batch(inputs), dtype=np.float64)


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


def true_label_from_name(path, class_names):
    """The class named in the file name (longest match wins), or None."""
    name = os.path.basename(path).lower()
    matches = [c for c in class_names if c.lower() in name]
    return max(matches, key=len) if matches else None
