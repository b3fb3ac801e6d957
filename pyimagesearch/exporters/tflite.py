"""LiteRT: a .tflite file with float32, float16 or int8 weights, described inside.

    none     float32, as train.py's own `<model>.tflite`; agrees with Keras to ~1e-6
    float16  weights stored as float16 (half the size), computed in float32
    int8     full integer: weights and activations int8, input uint8 pixels
             (scale 1, zero point 0 for train.py's models when the calibration
             images span 0-255, as the bundled sprites do), output float32
             probabilities in steps of 1/256; calibrated on training images

The writer is `pyimagesearch.litert.export_tflite` (train.py's), the runner
`pyimagesearch.litert.LiteRTClassifier`, which quantizes an integer input
itself, so classify.py feeds every variant the same uint8 images.
"""

from pyimagesearch import exporters
from pyimagesearch.cli import quiet_stderr
from pyimagesearch.litert import export_tflite

def export_litert(source, path, quantize="none", calibration_images=None):
    """Write `source` (exporters.Source) as a .tflite at `path`.

    calibration_images: uint8 RGB (N, S, S, 3) training images, needed for int8.
    """
    if quantize not in exporters.QUANTIZATIONS:
        raise exporters.ExportError(f"--quantize {quantize}: choose one of "
                                    f"{', '.join(exporters.QUANTIZATIONS)}")
    representative = None
    if quantize == "int8":
        if calibration_images is None or len(calibration_images) == 0:
            raise exporters.ExportError("--quantize int8 calibrates on training images: add "
                                        "--dataset FOLDER (the dataset the model was trained on)")

        def representative():
            for image in calibration_images[:exporters.CALIBRATION_IMAGES]:  # (S, S, 3) uint8
                yield [exporters.model_inputs(image[None], source.metadata)]  # (1, S, S, 3)

    metadata = dict(source.metadata, quantize=quantize)
    try:
        with quiet_stderr():  # the converter's progress lines, from C++
            export_tflite(source.model, path, quantize=None if quantize == "none" else quantize,
                          metadata=metadata, representative_dataset=representative)
    except Exception as error:  # the converter raises many types; all mean "cannot take it"
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
        raise exporters.ExportError(f"--format litert --quantize {quantize}: the LiteRT "
                                    f"converter cannot convert this network "
                                    f"({type(error).__name__}: {reason})") from None
    return path
