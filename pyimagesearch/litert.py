"""A LiteRT (.tflite) copy of a trained model, and a runner that needs no TensorFlow.

classify.py on one image spends ~5 s and ~1 GB importing TensorFlow and
loading a 104 MB .keras file (weights plus Adam's state). The same network as
a float32 LiteRT flatbuffer runs from `ai_edge_litert` alone: `LiteRTClassifier`
imports only `ai_edge_litert.interpreter` and numpy, never TensorFlow.
`export_tflite` (run by train.py, which has TensorFlow loaded anyway) writes it.

Models from train.py take raw 0-255 RGB pixels (Rescaling is inside), so the
runner feeds uint8 images as float32 values 0-255, exactly as Keras does.
"""

import os

import numpy as np

from pyimagesearch.cli import available_cpus, quiet_stderr
from pyimagesearch.persistence import atomic_path


def export_tflite(model, path, quantize=None):
    """Write `model` as a LiteRT flatbuffer at `path`, atomically.

    quantize=None keeps float32 weights (agrees with Keras to ~1e-6);
    "dynamic" stores weights as int8 (dynamic-range quantization): ~4x smaller,
    slightly different probabilities. Only built-in LiteRT ops are allowed, so
    the file runs on the plain ai_edge_litert interpreter (no Flex delegate).
    """
    import tensorflow as tf

    if quantize not in (None, "dynamic"):
        raise ValueError(f"quantize must be None or 'dynamic' (got {quantize!r})")
    options = {"target_spec": {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]}}
    if quantize == "dynamic":
        options["optimizations"] = [tf.lite.Optimize.DEFAULT]
    # Keras 3's exporter goes through a SavedModel in a temporary folder and
    # insists on a .tflite name, which the atomic temporary name keeps.
    with atomic_path(path, suffix=".tflite") as temporary:
        model.export(temporary, format="litert", verbose=False, **options)
    return path


class LiteRTClassifier:
    """Run a .tflite classifier: `predict(uint8 (N, S, S, 3))` -> probabilities (N, C)."""

    def __init__(self, path, num_threads=None, few_images=False):
        """few_images: skip the XNNPACK delegate, whose weight packing costs ~40 ms
        at start-up and pays off only over several images (measured: 1 ms load +
        ~22 ms per image without it, 42 ms load + ~6 ms per image with it)."""
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        if num_threads is None:
            num_threads = available_cpus()
        with quiet_stderr():  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
            options = ({"experimental_op_resolver_type":
                        OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES} if few_images else {})
            self.interpreter = Interpreter(model_path=os.fspath(path), num_threads=num_threads,
                                           **options)
            self.interpreter.allocate_tensors()
        self._input = self.interpreter.get_input_details()[0]
        self._output = self.interpreter.get_output_details()[0]
        shape = tuple(int(d) for d in self._input["shape"])  # (1, S, S, 3)
        if len(shape) != 4 or shape[1] != shape[2] or shape[3] != 3:
            raise ValueError(f"{path}: expected a square RGB image model, input is {shape}")
        self.image_size = shape[1]
        self.num_classes = int(self._output["shape"][-1])
        self._batch = shape[0]

    def predict(self, images):
        """Probabilities (N, num_classes), float64, for uint8 images (N, S, S, 3)."""
        images = np.asarray(images)
        expected = (self.image_size, self.image_size, 3)
        if images.ndim != 4 or images.shape[1:] != expected or images.dtype != np.uint8:
            raise ValueError(f"expected uint8 images of shape (N, {self.image_size}, "
                             f"{self.image_size}, 3), got {images.dtype} {images.shape}")
        if images.shape[0] != self._batch:  # the exported batch dimension is dynamic
            self.interpreter.resize_tensor_input(self._input["index"], list(images.shape))
            self.interpreter.allocate_tensors()
            self._batch = images.shape[0]
        self.interpreter.set_tensor(self._input["index"], images.astype(np.float32))
        self.interpreter.invoke()
        return np.array(self.interpreter.get_tensor(self._output["index"]), dtype=np.float64)
