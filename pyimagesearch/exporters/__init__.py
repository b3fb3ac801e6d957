"""Exporting a trained model to the files phones and other runtimes take.

One function per format, each writing one self-describing artifact:

    coreml       ML Program package (.mlpackage) for iOS/macOS; class labels inside  coreml.py
    onnx         .onnx for onnxruntime (C++, C#, Java, ...); description in metadata  onnx_file.py
    saved_model  TensorFlow SavedModel folder for TF Serving: image -> probabilities  saved_model.py
    litert       .tflite with float32, float16 or int8 weights                       tflite.py

Every artifact carries the same description (`artifact_metadata`: class
names, image size, channel order, input scale, run id), so a program that
loads it knows how to feed it: RGB pixels 0-255 resized (bilinear, aspect not
kept) by `imageio.load_image`, times `input_scale`. `outputs.py` says where
an export may be written (never over what export.py did not write);
`runtimes.py` opens the exported files again (classify.py, evaluate.py, the
tests and the bench).

Nothing here imports TensorFlow or a converter until an export starts, so a
bad flag or a missing converter is reported in well under a second.
"""

import contextlib
import importlib
import importlib.util
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass

FORMATS = ("coreml", "onnx", "saved_model", "litert")
QUANTIZATIONS = ("none", "float16", "int8")
# What each converter needs beyond requirements.txt: (module, the pip install that adds it).
CONVERTERS = {
    "coreml": [("coremltools", "coremltools==9.0")],
    "onnx": [("tf2onnx", "tf2onnx==1.17.0"), ("onnx", "onnx==1.23.2")],
    "saved_model": [],
    "litert": [],
}
ONNX_RUNTIME = ("onnxruntime", "onnxruntime==1.31.1")
CALIBRATION_IMAGES = 300  # int8: "a few hundred" training images; more barely moves the ranges
# The part of train.py's description that travels inside every exported file
# (the same keys as train.py's own LiteRT copy, `<model>.tflite`).
ARTIFACT_KEYS = ("format", "run_id", "class_names", "image_size", "channel_order",
                 "input_scale", "labelbin_sha256")
# What an export's name must end with (Xcode opens .mlpackage; classify.py tells
# .onnx and .tflite files from Keras models by it); a SavedModel is any folder.
SUFFIXES = {"coreml": ".mlpackage", "onnx": ".onnx", "litert": ".tflite"}


class ExportError(ValueError):
    """A user-facing problem with an export (the message is one line and names the fix)."""


class MissingPackageError(ExportError):
    """An optional converter or runtime is not installed."""


def require(module, pip_line, purpose):
    """Import an optional package, or raise MissingPackageError naming its pip install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingPackageError(f"{purpose} needs {module}, which is not installed: "
                                  f"pip install {pip_line}") from None


def check_converters(format_names):
    """Raise MissingPackageError for the first converter these formats lack (nothing imported)."""
    for name in format_names:
        for module, pip_line in CONVERTERS[name]:
            if not _installed(module):
                raise MissingPackageError(f"--format {name} needs {module}, which is not "
                                          f"installed: pip install {pip_line}")


def _installed(module):
    if module in sys.modules:  # None there means "import fails" (how the tests hide one)
        return sys.modules[module] is not None
    return importlib.util.find_spec(module) is not None


@dataclass
class Source:
    """A trained model ready to export, with what must travel with it."""
    model_path: str
    model: object  # keras.Model taking (N, S, S, 3) float32 pixels times input_scale
    description: dict  # train.py's, read from inside the .keras file
    metadata: dict  # ARTIFACT_KEYS of it: stored in every exported file

    @property
    def class_names(self):
        return self.metadata["class_names"]

    @property
    def image_size(self):
        return int(self.metadata["image_size"])


def read_source_description(model_path, labelbin_path):
    """The description of a model train.py saved, checked against its label file (no TensorFlow).

    Raises ExportError for a file that is not one of ours: exporting needs the
    class names and pixel format the description records.
    """
    from pyimagesearch import persistence

    if not os.path.isfile(model_path):
        raise ExportError(f"--model: file not found: {model_path}")
    description = persistence.read_description(model_path)
    if description is None or not isinstance(description.get("class_names"), list) \
            or "image_size" not in description:
        raise ExportError(f"--model {model_path}: not a model saved by train.py (no pokedex "
                          "description inside, so its class names and pixel format are "
                          "unknown); export a .keras file written by train.py")
    class_names = [str(name) for name in description["class_names"]]
    try:
        same_file = persistence.file_sha256(labelbin_path) == description.get("labelbin_sha256")
    except OSError as error:
        raise ExportError(f"--labelbin {labelbin_path}: cannot read ({error.strerror})") from None
    if not same_file:  # another copy or an older train.py: compare the class names
        labels = [str(name) for name in persistence.load_label_binarizer(labelbin_path).classes_]
        if labels != class_names:
            raise ExportError(f"{labelbin_path} lists classes {labels} but {model_path} was "
                              f"trained on {class_names}: they come from different runs")
    return description


def load_source(model_path, labelbin_path):
    """Load a model train.py saved, checked against its label file, for export."""
    from pyimagesearch import persistence
    from pyimagesearch.cli import import_tensorflow_quietly

    description = read_source_description(model_path, labelbin_path)
    import_tensorflow_quietly()
    model = persistence.load_model(model_path)
    shape, outputs = tuple(model.input_shape), model.output_shape[-1]  # (None, S, S, 3), C
    if shape[1:] != (description["image_size"],) * 2 + (3,):
        raise ExportError(f"{model_path}: input shape {shape} does not match the recorded "
                          f"image size {description['image_size']}")
    if outputs != len(description["class_names"]):
        raise ExportError(f"{model_path}: outputs {outputs} classes but its description lists "
                          f"{len(description['class_names'])}")
    return Source(model_path, model, description, artifact_metadata(description))


def artifact_metadata(description):
    """The keys every exported file carries, from a model's description."""
    metadata = {key: description[key] for key in ARTIFACT_KEYS if key in description}
    metadata.setdefault("channel_order", "RGB")
    metadata.setdefault("input_scale", 1.0)
    metadata["input"] = ("RGB pixels 0-255 (in channel_order), resized to image_size square "
                         "(bilinear, aspect ratio not kept), times input_scale")
    return metadata


def default_output(model_path, format_name, quantize="none"):
    """Where an export goes by default: beside the model, named after it."""
    if format_name == "litert":
        return f"{model_path}.{'float32' if quantize == 'none' else quantize}.tflite"
    return model_path + {"coreml": ".mlpackage", "onnx": ".onnx",
                         "saved_model": ".saved_model"}[format_name]


@contextlib.contextmanager
def atomic_folder(path, format_name):
    """Yield a temporary folder path beside `path`; on success it replaces `path`.

    A failed export leaves no half-written folder, and an earlier export at
    `path` stays until the new one is complete. What is at `path` is checked
    again just before (outputs.py): files put there during the export are not
    deleted with it. (Two renames: POSIX cannot
    swap folders in one, so a crash between them leaves the old one under a
    `.name.old*` name, never a mixed folder.)
    """
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    temporary = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                                 dir=parent)
    old = None
    try:
        staging = os.path.join(temporary, os.path.basename(path))  # converters pick the name
        yield staging
        from pyimagesearch.exporters.outputs import output_problem

        problem = output_problem(path, format_name)
        if problem:
            raise ExportError(f"--output: {problem}")
        if os.path.isdir(path):
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.old", dir=parent)
            os.replace(path, os.path.join(old, "previous"))
        os.replace(staging, path)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def export(source, format_name, output, quantize="none", calibration_images=None):
    """Write `source` as `format_name` at `output`; return `output`.

    quantize and calibration_images (uint8 RGB (N, S, S, 3), training images)
    apply to litert only; int8 needs the images.
    """
    if format_name == "coreml":
        from pyimagesearch.exporters.coreml import export_coreml

        return export_coreml(source, output)
    if format_name == "onnx":
        from pyimagesearch.exporters.onnx_file import export_onnx

        return export_onnx(source, output)
    if format_name == "saved_model":
        from pyimagesearch.exporters.saved_model import export_saved_model

        return export_saved_model(source, output)
    if format_name == "litert":
        from pyimagesearch.exporters.tflite import export_litert

        return export_litert(source, output, quantize, calibration_images)
    raise ExportError(f"unknown format {format_name!r}; choose one of {', '.join(FORMATS)}")


def in_channel_order(images, metadata):
    """uint8 RGB images (N, S, S, 3) -> the channel order an exported model takes, still uint8."""
    import numpy as np

    batch = np.asarray(images, dtype=np.uint8)
    if str(metadata.get("channel_order", "RGB")).upper() == "BGR":
        batch = np.ascontiguousarray(batch[..., ::-1])  # (N, S, S, 3), RGB -> BGR
    return batch


def model_inputs(images, metadata):
    """uint8 RGB images (N, S, S, 3) -> float32 in the model's channel order and scale.

    The same step as `inference.Classifier`, for int8 calibration samples.
    """
    import numpy as np

    return in_channel_order(images, metadata).astype(np.float32) \
        * np.float32(metadata.get("input_scale", 1.0))
