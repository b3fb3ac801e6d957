"""Opening an exported file again to run it: classify.py, evaluate.py, the tests, the bench.

Every runner has the interface of `litert.LiteRTClassifier`: `image_size`,
`num_classes`, `metadata` (the description inside the file, or None) and
`predict(uint8 RGB images (N, S, S, 3), scale)` -> float64 probabilities
(N, C). They are fed what `imageio.load_image` returns, in the channel order
and scale the file records: one preprocessing path whatever runs the model.
Opening an .onnx or .tflite never imports TensorFlow.
"""

import json
import os

import numpy as np

from pyimagesearch import exporters, persistence
from pyimagesearch.cli import available_cpus, quiet_stderr


def exported_kind(path):
    """"litert", "onnx", "saved_model" or "coreml" for a file export.py writes, else None (cheap)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "saved_model.pb")):
            return "saved_model"
        if os.path.isfile(os.path.join(path, "Manifest.json")):
            return "coreml"
        return None
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError:
        return None
    if head[4:8] == b"TFL3":  # the flatbuffer's file identifier
        return "litert"
    if path.lower().endswith(".onnx"):  # a protobuf: no signature to recognise it by
        return "onnx"
    return None


class OnnxClassifier:
    """Run an .onnx classifier with onnxruntime (CPU): `predict(uint8 (N, S, S, 3))` -> (N, C)."""

    def __init__(self, path, num_threads=None):
        runtime = exporters.require(*exporters.ONNX_RUNTIME, f"running {path}")
        options = runtime.SessionOptions()
        options.intra_op_num_threads = num_threads or available_cpus()
        options.log_severity_level = 3  # errors only
        try:
            self.session = runtime.InferenceSession(os.fspath(path), options,
                                                    providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own types for bad files
            reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
            raise persistence.ArtifactError(f"{path}: onnxruntime cannot load it "
                                            f"({type(error).__name__}: {reason})") from None
        self._input = self.session.get_inputs()[0]
        shape = self._input.shape  # ["batch", S, S, 3]
        if len(shape) != 4 or shape[1] != shape[2] or shape[3] != 3:
            raise persistence.ArtifactError(f"{path}: expected a square RGB image model, "
                                            f"input is {shape}")
        self.image_size = int(shape[1])
        self.num_classes = int(self.session.get_outputs()[0].shape[-1])
        stored = self.session.get_modelmeta().custom_metadata_map.get("pokedex")
        self.metadata = _json_dict(stored)

    def predict(self, images, scale=1.0):
        inputs = np.asarray(images, dtype=np.uint8).astype(np.float32) * np.float32(scale)
        outputs = self.session.run(None, {self._input.name: inputs})[0]
        return np.asarray(outputs, dtype=np.float64)


class SavedModelClassifier:
    """Run an exported SavedModel's serving signature (imports TensorFlow)."""

    def __init__(self, path):
        from pyimagesearch.cli import import_tensorflow_quietly
        from pyimagesearch.exporters import saved_model

        import_tensorflow_quietly()
        import tensorflow as tf

        with quiet_stderr():
            self.signature = tf.saved_model.load(os.fspath(path)).signatures[saved_model.SIGNATURE]
        spec = self.signature.structured_input_signature[1][saved_model.INPUT_NAME]
        self.image_size = int(spec.shape[1])
        self.num_classes = int(self.signature.structured_outputs[saved_model.OUTPUT_NAME].shape[-1])
        self.metadata = saved_model.read_metadata(path)
        self._tf = tf

    def predict(self, images, scale=1.0):
        from pyimagesearch.exporters import saved_model

        inputs = np.asarray(images, dtype=np.uint8).astype(np.float32) * np.float32(scale)
        outputs = self.signature(**{saved_model.INPUT_NAME: self._tf.constant(inputs)})
        return np.asarray(outputs[saved_model.OUTPUT_NAME], dtype=np.float64)


def open_exported(path, few_images=False):
    """A runner for an exported file (see the module's docstring); ArtifactError if it cannot run here."""
    kind = exported_kind(path)
    if kind == "onnx":
        return OnnxClassifier(path)
    if kind == "saved_model":
        return SavedModelClassifier(path)
    if kind == "coreml":
        raise persistence.ArtifactError(f"{path}: a Core ML package runs on macOS and iOS only "
                                        "(use the .onnx or .tflite export here)")
    if kind != "litert":
        raise persistence.ArtifactError(f"{path}: not a model file export.py writes "
                                        "(.tflite, .onnx, a SavedModel or .mlpackage folder)")
    from pyimagesearch import litert

    try:
        metadata = litert.read_metadata(path)
        runner = litert.LiteRTClassifier(path, few_images=few_images)
    except ImportError:
        raise exporters.MissingPackageError(f"running {path} needs ai_edge_litert, which is "
                                            "not installed: pip install ai-edge-litert==2.3.0") \
            from None
    except Exception as error:  # LiteRTFileError, or the interpreter's ValueError/RuntimeError
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
        raise persistence.ArtifactError(f"{path}: LiteRT cannot load it ({reason})") from None
    runner.metadata = metadata
    return runner


def classifier_parts(model_path, labelbin_path, few_images=False):
    """(backend, runner, class_names, metadata) for `inference.Classifier` given an exported file.

    The class names come from inside the file and must be the label file's.
    Every problem is an ArtifactError with one line naming the file.
    """
    try:
        runner = open_exported(model_path, few_images=few_images)
    except exporters.ExportError as error:  # a missing runtime
        raise persistence.ArtifactError(str(error)) from None
    metadata = runner.metadata
    if not isinstance((metadata or {}).get("class_names"), list):
        raise persistence.ArtifactError(
            f"{model_path}: no pokedex description inside (not written by export.py or "
            "train.py), so its class names and pixel format are unknown")
    class_names = [str(name) for name in metadata["class_names"]]
    if runner.num_classes != len(class_names):
        raise persistence.ArtifactError(f"{model_path}: outputs {runner.num_classes} classes "
                                        f"but its description lists {len(class_names)}")
    if persistence.file_sha256(labelbin_path) != metadata.get("labelbin_sha256"):
        labels = [str(name) for name in persistence.load_label_binarizer(labelbin_path).classes_]
        if labels != class_names:
            raise persistence.ArtifactError(
                f"{labelbin_path} lists classes {labels} but {model_path} was trained on "
                f"{class_names}: they come from different training runs")
    return exported_kind(model_path), runner, class_names, metadata


def _json_dict(text):
    try:
        value = json.loads(text) if text else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class KerasRunner:
    """The Keras model behind the runner interface: the reference the exports are compared with."""

    def __init__(self, model):
        self.model = model
        self.image_size = int(model.input_shape[1])
        self.num_classes = int(model.output_shape[-1])
        self.metadata = None

    def predict(self, images, scale=1.0):
        inputs = np.asarray(images, dtype=np.uint8).astype(np.float32) * np.float32(scale)
        return np.asarray(self.model.predict_on_batch(inputs), dtype=np.float64)
