"""What tying the LiteRT copy to its model by run id costs classify.py's one-image fast path.

    python bench/bench_litert_tie.py [--runs 7]

Builds SmallerVGGNet at 96 px for 5 classes (random weights; the size is what
matters) in a temporary folder, saved as train.py saves it: description with
a run id inside the .keras zip, the same run id in the .tflite's metadata,
lb.pickle. Prints the in-process cost of the tie check (read the model's
description from the zip, the .tflite's metadata over mmap, the label file's
sha256), then the median wall time of `classify.py` on examples/charmander.png
in a fresh process, which takes the LiteRT path and never imports TensorFlow.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def build(folder):
    import keras
    from sklearn.preprocessing import LabelBinarizer

    from pyimagesearch import persistence
    from pyimagesearch.litert import export_tflite
    from pyimagesearch.smallervggnet import SmallerVGGNet

    classes = ["bulbasaur", "charmander", "mewtwo", "pikachu", "squirtle"]
    model_path, labels_path = os.path.join(folder, "pokedex.model"), os.path.join(folder, "lb.pickle")
    persistence.save_label_binarizer(LabelBinarizer().fit(classes), labels_path)
    keras.utils.set_random_seed(0)
    model = SmallerVGGNet.build(96, 96, 3, len(classes), rescale=True)
    description = {"format": "pokedex", "run_id": uuid.uuid4().hex, "class_names": classes,
                   "image_size": 96, "channel_order": "RGB", "input_scale": 1.0,
                   "labelbin_sha256": persistence.file_sha256(labels_path)}
    persistence.save_model(model, model_path, description=description)
    export_tflite(model, f"{model_path}.tflite", metadata=description)
    return model_path, labels_path


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="fresh classify.py processes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        builder = ("import sys; sys.path.insert(0, sys.argv[1]); "
                   "from bench.bench_litert_tie import build; build(sys.argv[2])")
        subprocess.run([sys.executable, "-c", builder, ROOT, folder], check=True,
                       env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), stderr=subprocess.DEVNULL)
        model, labels = os.path.join(folder, "pokedex.model"), os.path.join(folder, "lb.pickle")
        print(f"model {os.path.getsize(model) / 1e6:.1f} MB, "
              f"tflite {os.path.getsize(model + '.tflite') / 1e6:.1f} MB")

        from pyimagesearch import inference

        check = lambda: inference._matching_litert(  # noqa: E731
            model, labels, inference.model_description(model), log=print)
        assert check() is not None, "the LiteRT copy should match"
        timings = []
        for _ in range(200):
            started = time.perf_counter()
            check()
            timings.append(time.perf_counter() - started)
        print(f"tie check (description + tflite metadata + lb.pickle sha256): "
              f"median {statistics.median(timings) * 1e3:.3f} ms over 200")

        walls = []
        for _ in range(args.runs):
            started = time.perf_counter()
            result = subprocess.run(
                [sys.executable, os.path.join(ROOT, "classify.py"), "-m", model, "-l", labels,
                 "-i", os.path.join(ROOT, "examples", "charmander.png"),
                 "-o", os.path.join(folder, "out.png")], capture_output=True, text=True)
            walls.append(time.perf_counter() - started)
            assert result.returncode == 0 and result.stderr == "", result.stderr
        print(f"classify.py, one image, LiteRT: median {statistics.median(walls):.3f} s "
              f"over {args.runs} fresh processes (min {min(walls):.3f} s)")


if __name__ == "__main__":
    main()
