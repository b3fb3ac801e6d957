"""ONNX: one .onnx file for onnxruntime (C++, C#, Java, JavaScript, Python), described inside.

Keras 3's own `model.export(format="onnx")` (through tf2onnx) converts
SmallerVGGNet; onnxruntime agrees with Keras to ~1e-7. The graph takes
`image`, float32 (N, S, S, 3): RGB pixels 0-255 times input_scale (1.0 for
train.py's models, which rescale inside), and returns `probabilities` (N, C).
The model's metadata_props hold the description: `pokedex` (the whole JSON)
and, for tools that show key/value pairs (Netron), `class_names`,
`image_size`, `channel_order` and `input_scale` one by one.
"""

import json
import warnings

from pyimagesearch import exporters
from pyimagesearch.cli import quiet_stderr
from pyimagesearch.persistence import atomic_path

INPUT_NAME, OUTPUT_NAME = "image", "probabilities"


def export_onnx(source, path):
    """Write `source` (exporters.Source) as an ONNX file at `path` (*.onnx), atomically."""
    for module, pip_line in exporters.CONVERTERS["onnx"]:
        exporters.require(module, pip_line, "--format onnx")
    import onnx
    import tensorflow as tf

    size = source.image_size
    signature = tf.TensorSpec((None, size, size, 3), tf.float32, name=INPUT_NAME)
    with atomic_path(path, suffix=".onnx") as temporary:
        try:
            with quiet_stderr(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tf2onnx's numpy 2 FutureWarnings
                source.model.export(temporary, format="onnx", verbose=False,
                                    input_signature=[signature])
        except Exception as error:  # tf2onnx raises many types; all mean "cannot take it"
            reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
            raise exporters.ExportError(f"--format onnx: tf2onnx cannot convert this network "
                                        f"({type(error).__name__}: {reason})") from None
        graph_file = onnx.load(temporary)
        _rename_output(graph_file.graph, OUTPUT_NAME)
        metadata = source.metadata
        properties = {"pokedex": json.dumps(metadata, sort_keys=True),
                      "class_names": json.dumps(metadata["class_names"]),
                      "image_size": str(metadata["image_size"]),
                      "channel_order": metadata["channel_order"],
                      "input_scale": str(metadata["input_scale"])}
        del graph_file.metadata_props[:]
        for key, value in properties.items():
            graph_file.metadata_props.add(key=key, value=value)
        graph_file.doc_string = (f"Pokedex classifier, {len(metadata['class_names'])} classes. "
                                 f"Input {INPUT_NAME}: {metadata['input']}.")
        onnx.save(graph_file, temporary)
    return path


def _rename_output(graph, name):
    """Give the graph's (only) output a readable name instead of tf2onnx's `Identity:0`."""
    old = graph.output[0].name
    for node in graph.node:
        node.output[:] = [name if output == old else output for output in node.output]
        node.input[:] = [name if value == old else value for value in node.input]
    graph.output[0].name = name
