"""A LiteRT (.tflite) copy of a trained model, and a runner that needs no TensorFlow.

classify.py on one image spends ~5 s and ~1 GB importing TensorFlow and
loading the 35 MB .keras file. The same network as
a float32 LiteRT flatbuffer runs from `ai_edge_litert` alone: `LiteRTClassifier`
imports only `ai_edge_litert.interpreter` and numpy, never TensorFlow.
`export_tflite` (run by train.py, which has TensorFlow loaded anyway) writes it.

Models from train.py take raw 0-255 RGB pixels (Rescaling is inside), so the
runner feeds uint8 images as float32 values 0-255, exactly as Keras does.

`export_tflite(..., metadata=...)` stores a JSON description (run id, class
names, ...) in the flatbuffer's own `metadata` table; `read_metadata` reads it
back with `struct` over an mmap in well under a millisecond, so classify.py can
prove a .tflite belongs to its model before trusting it.
"""

import json
import mmap
import os
import struct

import numpy as np

from pyimagesearch.cli import available_cpus, quiet_stderr
from pyimagesearch.persistence import atomic_path


METADATA_NAME = "pokedex"  # the name of our entry in the flatbuffer's metadata table


class LiteRTFileError(ValueError):
    """A file that is not a readable LiteRT flatbuffer (the message names it)."""


def export_tflite(model, path, quantize=None, metadata=None, representative_dataset=None):
    """Write `model` as a LiteRT flatbuffer at `path`, atomically.

    quantize=None keeps float32 weights (agrees with Keras to ~1e-6);
    "dynamic" stores weights as int8 (dynamic-range quantization): ~4x smaller,
    slightly different probabilities; "float16" stores weights as float16 (2x
    smaller, computed in float32); "int8" quantizes weights and activations
    (full integer, uint8 input, float32 output), calibrated on the float32
    batches `representative_dataset()` yields. Only built-in LiteRT ops are allowed, so
    the file runs on the plain ai_edge_litert interpreter (no Flex delegate).
    metadata: a JSON-able dict (train.py passes the run id, class names, ...)
    stored in the flatbuffer as metadata entry "pokedex"; see `read_metadata`.
    """
    import tensorflow as tf

    if quantize not in (None, "dynamic", "float16", "int8"):
        raise ValueError(f"quantize must be None, 'dynamic', 'float16' or 'int8' "
                         f"(got {quantize!r})")
    options = {"target_spec": {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]}}
    if quantize is not None:
        options["optimizations"] = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        options["target_spec"]["supported_types"] = [tf.float16]
    if quantize == "int8":
        if representative_dataset is None:
            raise ValueError("quantize='int8' needs a representative_dataset to calibrate on")
        # uint8 in: a model that takes 0-255 pixels gets them as they are (scale 1, zero 0).
        options.update(representative_dataset=representative_dataset,
                       inference_input_type=tf.uint8,
                       target_spec={"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]})
    # Keras 3's exporter goes through a SavedModel in a temporary folder and
    # insists on a .tflite name, which the atomic temporary name keeps.
    with atomic_path(path, suffix=".tflite") as temporary:
        model.export(temporary, format="litert", verbose=False, **options)
        if metadata is not None:
            _embed_metadata(temporary, metadata)
    return path


def _embed_metadata(path, metadata):
    """Add (or replace) our metadata entry: a buffer holding the JSON, named METADATA_NAME."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    flatbuffer = flatbuffer_utils.read_model(path)
    flatbuffer.metadata = [entry for entry in (flatbuffer.metadata or [])
                           if _text(entry.name) != METADATA_NAME]
    buffer = schema.BufferT()
    buffer.data = list(json.dumps(metadata, sort_keys=True).encode())
    flatbuffer.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = METADATA_NAME, len(flatbuffer.buffers) - 1
    flatbuffer.metadata.append(entry)
    flatbuffer_utils.write_model(flatbuffer, path)


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


def read_metadata(path):
    """The dict `export_tflite(..., metadata=...)` stored in `path`, or None if it has none.

    Reads only the flatbuffer's tables (mmap, no TensorFlow, no interpreter).
    Raises LiteRTFileError for a file that is not a LiteRT flatbuffer or is
    cut short, and OSError when it cannot be opened.
    """
    with open(path, "rb") as handle:
        if os.fstat(handle.fileno()).st_size < 8:
            raise LiteRTFileError(f"{path}: not a LiteRT file (too short)")
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            try:
                raw = _find_metadata(data, METADATA_NAME)
            except (struct.error, IndexError, ValueError) as error:
                raise LiteRTFileError(f"{path}: damaged or truncated LiteRT file ({error})") \
                    from None
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        raise LiteRTFileError(f"{path}: unreadable {METADATA_NAME} metadata") from None
    return value if isinstance(value, dict) else None


# The TFLite schema (tensorflow/lite/schema/schema.fbs), field numbers used here:
# Model: 4 buffers:[Buffer], 6 metadata:[Metadata]; Metadata: 0 name:string,
# 1 buffer:uint; Buffer: 0 data:[ubyte], 1 offset:ulong, 2 size:ulong (> 2 GB models).
_MODEL_BUFFERS, _MODEL_METADATA = 4, 6


def _find_metadata(data, name):
    if bytes(data[4:8]) != b"TFL3":
        raise ValueError("no TFL3 identifier")
    model = _u32(data, 0)
    metadata = _field(data, model, _MODEL_METADATA)
    if metadata is None:
        return None
    wanted = name.encode()
    for entry in _vector_tables(data, metadata):
        entry_name = _field(data, entry, 0)
        if entry_name is None or _vector_bytes(data, _deref(data, entry_name)) != wanted:
            continue
        index_at = _field(data, entry, 1)
        index = _u32(data, index_at) if index_at is not None else 0
        buffer = _vector_table(data, _field(data, model, _MODEL_BUFFERS), index)
        data_at = _field(data, buffer, 0)
        if data_at is not None:
            return _vector_bytes(data, _deref(data, data_at))
        offset_at, size_at = _field(data, buffer, 1), _field(data, buffer, 2)
        if offset_at is None or size_at is None:
            return b""
        offset, size = (_read("<Q", data, at) for at in (offset_at, size_at))
        if offset + size > len(data):
            raise ValueError("metadata beyond the end of the file")
        return bytes(data[offset:offset + size])
    return None


def _read(layout, data, position):
    """One little-endian number at `position`, refusing positions outside the file."""
    if not 0 <= position <= len(data) - struct.calcsize(layout):
        raise ValueError(f"offset {position} outside the file")
    return struct.unpack_from(layout, data, position)[0]


def _u32(data, position):
    return _read("<I", data, position)


def _deref(data, position):
    """Follow a uoffset stored at `position`."""
    return position + _u32(data, position)


def _field(data, table, number):
    """Absolute position of field `number` of the table at `table`, None if absent."""
    if table is None:
        raise ValueError("missing table")
    vtable = table - _read("<i", data, table)
    slot = 4 + 2 * number
    if slot + 2 > _read("<H", data, vtable):
        return None
    offset = _read("<H", data, vtable + slot)
    return table + offset if offset else None


def _vector_tables(data, position):
    """The tables of a vector of tables whose uoffset is at `position`."""
    if position is None:
        raise ValueError("missing vector")
    start = _deref(data, position)
    for index in range(_u32(data, start)):
        yield _deref(data, start + 4 + 4 * index)


def _vector_table(data, position, index):
    """Table `index` of a vector of tables whose uoffset is at `position`."""
    if position is None:
        raise ValueError("missing vector")
    start = _deref(data, position)
    if not 0 <= index < _u32(data, start):
        raise ValueError(f"buffer {index} does not exist")
    return _deref(data, start + 4 + 4 * index)


def _vector_bytes(data, start):
    length = _u32(data, start)
    if start + 4 + length > len(data):
        raise ValueError("vector beyond the end of the file")
    return bytes(data[start + 4:start + 4 + length])


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
        # train.py's copy also outputs features after the probabilities
        # (features.feature_model); the flatbuffer lists tensors in its own
        # order, so take them by the signature's names (output_0, output_1, ...).
        outputs = _outputs_in_model_order(self.interpreter)
        self._output, self._features = outputs[0], outputs[1:]
        self.feature_sizes = tuple(int(output["shape"][-1]) for output in self._features)
        shape = tuple(int(d) for d in self._input["shape"])  # (1, S, S, 3)
        if len(shape) != 4 or shape[1] != shape[2] or shape[3] != 3:
            raise ValueError(f"{path}: expected a square RGB image model, input is {shape}")
        self.image_size = shape[1]
        self.num_classes = int(self._output["shape"][-1])
        self._batch = shape[0]

    def predict(self, images, scale=1.0):
        """Probabilities (N, num_classes), float64, for uint8 images (N, S, S, 3).

        The model is fed the pixels times `scale` (1.0 for train.py's models,
        which rescale inside)."""
        return self.run(images, scale)[0]

    def run(self, images, scale=1.0):
        """(probabilities (N, C) float64, [the other outputs, e.g. features, float32])."""
        images = np.asarray(images)
        expected = (self.image_size, self.image_size, 3)
        if images.ndim != 4 or images.shape[1:] != expected or images.dtype != np.uint8:
            raise ValueError(f"expected uint8 images of shape (N, {self.image_size}, "
                             f"{self.image_size}, 3), got {images.dtype} {images.shape}")
        if images.shape[0] != self._batch:  # the exported batch dimension is dynamic
            self.interpreter.resize_tensor_input(self._input["index"], list(images.shape))
            self.interpreter.allocate_tensors()
            self._batch = images.shape[0]
        inputs = images.astype(np.float32)
        if scale != 1.0:
            inputs *= np.float32(scale)
        self.interpreter.set_tensor(self._input["index"], _quantized(inputs, self._input))
        self.interpreter.invoke()
        outputs = np.array(self.interpreter.get_tensor(self._output["index"]), dtype=np.float64)
        if self._output["dtype"] != np.float32:  # an integer output: back to probabilities
            output_scale, zero_point = self._output["quantization"]
            outputs = (outputs - zero_point) * output_scale
        extras = [np.array(self.interpreter.get_tensor(output["index"]), dtype=np.float32)
                  for output in self._features]
        return outputs, extras


def _outputs_in_model_order(interpreter):
    """Output tensor details in the exported model's output order (output_0, output_1, ...)."""
    details = interpreter.get_output_details()
    try:
        signature = interpreter.get_signature_runner().get_output_details()  # {name: details}
    except (ValueError, KeyError, RuntimeError):  # no signature (an old converter's file)
        return details
    if len(signature) != len(details):
        return details
    return [signature[name] for name in sorted(signature, key=_output_number)]


def _output_number(name):
    digits = name.rsplit("_", 1)[-1]
    return (0, int(digits), name) if digits.isdigit() else (1, 0, name)


def _quantized(values, tensor):
    """Float model inputs as an integer input tensor takes them (int8 export: uint8, scale 1)."""
    if tensor["dtype"] == np.float32:
        return values
    scale, zero_point = tensor["quantization"]
    limits = np.iinfo(tensor["dtype"])
    return np.clip(np.round(values / scale + zero_point), limits.min, limits.max) \
        .astype(tensor["dtype"])
