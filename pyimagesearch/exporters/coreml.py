"""Core ML: an ML Program package (.mlpackage) for iOS 15+ and macOS 12+, class labels inside.

Keras 3 models convert through a concrete TensorFlow function with a fixed
input shape (1, S, S, 3): converting Keras 3's exported SavedModel fails with
"Only a single concrete function is supported". coremltools 9 warns that it
was tested up to TensorFlow 2.12; it converts SmallerVGGNet from 2.21.

The input is an image (Vision and Xcode's preview hand it a picture): Core ML
multiplies its 0-255 pixels by the model's input_scale, in the recorded
channel order. The outputs are Core ML's classifier pair, `classLabel` (the
most likely class name) and `classLabel_probs` (class name -> probability).
Weights and arithmetic are float16 (coremltools' default for ML Programs,
what the Neural Engine runs; half the size), so expect answers within ~1e-2
of Keras, as for LiteRT float16. Predictions need macOS, so on Linux
`check_package` reads the spec back instead. export.py's marker
(outputs.py) is an item of the package, so a later export may replace it.
"""

import json
import os

from pyimagesearch import exporters
from pyimagesearch.cli import quiet_stderr
from pyimagesearch.exporters import outputs

PREVIEW_KEY = "com.apple.coreml.model.preview.type"  # Xcode shows an image-classifier preview


def _import_coremltools():
    # On Linux it prints "Failed to load _MLModelProxy ..." (no Core ML framework) on import.
    with quiet_stderr():
        return exporters.require("coremltools", "coremltools==9.0", "--format coreml")


def export_coreml(source, path):
    """Write `source` (exporters.Source) as an ML Program package at `path` (*.mlpackage)."""
    coremltools = _import_coremltools()
    import tensorflow as tf

    size, model = source.image_size, source.model
    signature = tf.TensorSpec((1, size, size, 3), tf.float32, name="image")
    function = tf.function(lambda image: model(image, training=False),
                           input_signature=[signature]).get_concrete_function()
    layout = (coremltools.colorlayout.BGR if source.metadata["channel_order"].upper() == "BGR"
              else coremltools.colorlayout.RGB)
    image = coremltools.ImageType(name="image", shape=(1, size, size, 3), color_layout=layout,
                                  scale=float(source.metadata["input_scale"]))
    try:
        with quiet_stderr():  # the TF-version warning and progress bars
            package = coremltools.convert(
                [function], source="tensorflow", inputs=[image],
                classifier_config=coremltools.ClassifierConfig(list(source.class_names)),
                convert_to="mlprogram", minimum_deployment_target=coremltools.target.iOS15)
    except Exception as error:  # the converter raises many types; all mean "cannot take it"
        raise exporters.ExportError(f"--format coreml: coremltools cannot convert this network "
                                    f"({type(error).__name__}: {_first_line(error)})") from None
    package.short_description = (f"Pokedex classifier: {len(source.class_names)} classes, "
                                 f"{size}x{size} {source.metadata['channel_order']} image")
    package.input_description["image"] = f"{size}x{size} image (Vision scales it to fill)"
    package.output_description["classLabel"] = "most likely class"
    package.output_description["classLabel_probs"] = "probability of each class"
    package.user_defined_metadata["pokedex"] = json.dumps(source.metadata, sort_keys=True)
    package.user_defined_metadata[PREVIEW_KEY] = "imageClassifier"
    with exporters.atomic_folder(path, "coreml") as staging, quiet_stderr():
        package.save(staging)
        _add_marker(staging, source.metadata)
    return path


def _add_marker(package_path, metadata):
    """Register export.py's marker (outputs.py) as an item of the package, as Core ML's
    package format asks of extra files: Data/pokedex/, listed in Manifest.json."""
    from coremltools.libmodelpackage import ModelPackage

    marker = os.path.join(os.path.dirname(package_path), outputs.MARKER_NAME)
    with open(marker, "w", encoding="utf-8") as handle:
        handle.write(outputs.marker_text(package_path, "coreml", metadata))
    package = ModelPackage(package_path)
    package.addItem(marker, outputs.MARKER_NAME, "pokedex",
                    "which export.py run wrote this package, and what it holds")
    del package  # it writes Manifest.json when it goes


def describe_package(path):
    """What an .mlpackage declares, read from its spec (works on Linux, no prediction).

    Returns {"input": {name, width, height, color_space}, "outputs": [names],
    "class_labels": [...], "metadata": the pokedex dict or None, "preview": str}.
    """
    coremltools = _import_coremltools()
    spec = coremltools.utils.load_spec(path)
    image = spec.description.input[0]
    metadata = dict(spec.description.metadata.userDefined)
    return {
        "type": spec.WhichOneof("Type"),
        "input": {"name": image.name, "kind": image.type.WhichOneof("Type"),
                  "width": image.type.imageType.width, "height": image.type.imageType.height,
                  "color_space": coremltools.proto.FeatureTypes_pb2.ImageFeatureType
                  .ColorSpace.Name(image.type.imageType.colorSpace)},
        "outputs": [output.name for output in spec.description.output],
        "class_labels": _class_labels(spec),
        "metadata": json.loads(metadata["pokedex"]) if "pokedex" in metadata else None,
        "preview": metadata.get(PREVIEW_KEY),
    }


def check_package(path, source):
    """Read the package back; ExportError unless its input and class labels are `source`'s.

    Returns one line describing it for export.py to print.
    """
    found = describe_package(path)
    size = source.image_size
    if found["input"]["kind"] != "imageType" or (found["input"]["width"],
                                                 found["input"]["height"]) != (size, size):
        raise exporters.ExportError(f"{path}: its input is not a {size}x{size} image: "
                                    f"{found['input']}")
    if found["class_labels"] != list(source.class_names):
        raise exporters.ExportError(f"{path}: its class labels {found['class_labels']} are not "
                                    f"the model's {list(source.class_names)}")
    return (f"read back: input {found['input']['name']} = {size}x{size} "
            f"{found['input']['color_space']} image, outputs {', '.join(found['outputs'])}, "
            f"{len(found['class_labels'])} class labels inside")


def _class_labels(spec):
    """The class names of an ML Program classifier: the `classes` list of its classify op."""
    function = spec.mlProgram.functions["main"]
    block = function.block_specializations[function.opset]
    for operation in block.operations:
        if operation.type == "classify":
            values = operation.inputs["classes"].arguments[0].value.immediateValue.list.values
            return [value.immediateValue.tensor.strings.values[0] for value in values]
    return []


def _first_line(error):
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else ""
