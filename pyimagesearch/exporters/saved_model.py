"""SavedModel: a TensorFlow folder for TF Serving (and tf.saved_model.load).

Its `serving_default` signature takes `image`, float32 (N, S, S, 3): RGB
pixels 0-255 times input_scale, and returns {"probabilities": (N, C)}. The
description sits in `assets.extra/pokedex.json`, the folder TF Serving keeps
for files of its users (it loads `<base>/<version>/saved_model.pb`), beside
export.py's marker (outputs.py), which lets a later export replace the folder.
"""

import json
import os

from pyimagesearch import exporters
from pyimagesearch.cli import quiet_stderr
from pyimagesearch.exporters import outputs

SIGNATURE, INPUT_NAME, OUTPUT_NAME = "serving_default", "image", "probabilities"
METADATA_FILE = os.path.join("assets.extra", "pokedex.json")


def export_saved_model(source, path):
    """Write `source` (exporters.Source) as a SavedModel folder at `path`, atomically."""
    import tensorflow as tf

    model, size = source.model, source.image_size

    @tf.function(input_signature=[tf.TensorSpec((None, size, size, 3), tf.float32,
                                                name=INPUT_NAME)])
    def serve(image):  # (N, S, S, 3) -> {"probabilities": (N, C)}
        return {OUTPUT_NAME: model(image, training=False)}

    # A plain tf.Module, not keras.export.ExportArchive: the archive stores every
    # weight twice (measured: 69.7 MB for the 34.8 MB SmallerVGGNet at 96 px).
    module = tf.Module()
    module.model, module.serve = model, serve
    with exporters.atomic_folder(path, "saved_model") as staging:
        with quiet_stderr():
            tf.saved_model.save(module, staging, signatures={SIGNATURE: serve})
        os.makedirs(os.path.join(staging, "assets.extra"), exist_ok=True)
        with open(os.path.join(staging, METADATA_FILE), "w") as handle:
            json.dump(source.metadata, handle, indent=2, sort_keys=True)
        # Last: it lists everything above, so a later export may replace this folder.
        marker = outputs.marker_text(staging, "saved_model", source.metadata)
        with open(os.path.join(staging, *outputs.MARKERS["saved_model"].split("/")), "w",
                  encoding="utf-8") as handle:
            handle.write(marker)
    return path


def read_metadata(path):
    """The description stored in a SavedModel folder by `export_saved_model`, or None."""
    try:
        with open(os.path.join(path, METADATA_FILE)) as handle:
            value = json.load(handle)
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None
