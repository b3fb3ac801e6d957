"""Model files as train.py writes them (description inside, LiteRT copy beside), without training.

The colour model of conftest.py is saved bare, which classify.py now treats as
a tutorial-era model (BGR, 1/255). `describe_as_trained` gives it what
train.py records, so tests of everything else see one of this project's models.
"""

import uuid

from pyimagesearch import persistence


def describe_as_trained(model_path, labels_path, run_id=None, tflite=False, image_size=16):
    """Embed train.py's description in `model_path`; optionally export `<model>.tflite` too.

    Returns the description. Both files carry the same run id, as after training.
    """
    classes = [str(name) for name in persistence.load_label_binarizer(labels_path).classes_]
    description = {"format": "pokedex", "run_id": run_id or uuid.uuid4().hex,
                   "class_names": classes, "image_size": image_size,
                   "channel_order": "RGB", "input_scale": 1.0,
                   "input": "uint8 pixels 0-255; the model rescales to [0, 1] itself",
                   "labelbin_sha256": persistence.file_sha256(labels_path)}
    persistence.embed_description(model_path, description)
    if tflite:
        from pyimagesearch.litert import export_tflite

        export_tflite(persistence.load_model(model_path), f"{model_path}.tflite",
                      metadata=description)
    return description
