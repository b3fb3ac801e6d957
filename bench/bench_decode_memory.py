"""Memory of reading a folder of very large photos: the recipe's loop vs the project's cache build.

    python bench/bench_decode_memory.py                      # ~1 min, makes bench/data/bigphotos
    python bench/bench_decode_memory.py --baseline a99b9ac   # also the package at an old commit

The folder: `--count` images per class in two classes, 6,000 x 6,000 px (36 MP),
half RGBA PNGs (a phone screenshot or a cut-out with transparency), half
JPEGs. Each configuration runs in a fresh process, without TensorFlow, and
reports its peak RSS (VmHWM) and what is still resident once the images are
read (VmRSS): that remainder is what TensorFlow, imported next by train.py,
allocates on top of.

    recipe    the tutorial's loop: cv2.imread, cv2.resize to 96, img_to_array
              appended to a list, then np.array(dtype="float") / 255
    project   pyimagesearch.dataset.load_image_folder into an empty cache
              (two decoding threads, as on a 2-core machine)
    baseline  the same, with the package as it was at --baseline COMMIT
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)

CHILD = r"""
import json, os, sys, tempfile, time
started = time.time()
kind, folder = sys.argv[1], sys.argv[2]
if kind == "recipe":
    import cv2, numpy as np
    data = []
    for name in sorted(os.listdir(folder)):
        for file_name in sorted(os.listdir(os.path.join(folder, name))):
            image = cv2.imread(os.path.join(folder, name, file_name))
            data.append(cv2.resize(image, (96, 96)).astype("float32"))
    data = np.array(data, dtype="float") / 255.0
    count = len(data)
else:
    from pyimagesearch import dataset
    count = len(dataset.load_image_folder(folder, 96, tempfile.mkdtemp(),
                                          log=lambda message: None).paths)
status = {line.split(":")[0]: int(line.split()[1]) / 1024 for line in open("/proc/self/status")
          if line.startswith(("VmHWM", "VmRSS"))}
print(json.dumps({"images": count, "seconds": time.time() - started,
                  "peak_mib": status["VmHWM"], "resident_after_mib": status["VmRSS"]}))
"""


def make_folder(folder, count):
    from PIL import Image

    for class_name in ("a", "b"):
        os.makedirs(os.path.join(folder, class_name), exist_ok=True)
        for index in range(count):
            path = os.path.join(folder, class_name, f"{index}.{'png' if index % 2 else 'jpg'}")
            if os.path.exists(path):
                continue
            ramp = Image.linear_gradient("L").resize((6000, 6000))
            channels = (ramp, ramp.rotate(90), ramp.rotate(180 + 45 * index))
            if index % 2:
                Image.merge("RGBA", channels + (Image.new("L", ramp.size, 200),)).save(
                    path, compress_level=1)
            else:
                Image.merge("RGB", channels).save(path, quality=90)


def run(kind, folder, package_root):
    environment = dict(os.environ, PYTHONPATH=package_root)
    # cwd too: `python -c` puts the current folder first on sys.path
    result = subprocess.run([sys.executable, "-c", CHILD, kind, os.path.abspath(folder)],
                            env=environment, cwd=package_root, capture_output=True, text=True,
                            check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", default=os.path.join(BENCH, "data", "bigphotos"))
    parser.add_argument("--count", type=int, default=4, help="images per class (default: 4)")
    parser.add_argument("--baseline", metavar="COMMIT",
                        help="also measure pyimagesearch/ as it was at this commit")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    make_folder(args.folder, args.count)
    configurations = {"recipe": REPO, "project": REPO}
    if args.baseline:
        old = tempfile.mkdtemp(prefix="pokedex-baseline-")
        archive = subprocess.run(["git", "-C", REPO, "archive", args.baseline, "pyimagesearch"],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", old], input=archive, check=True)
        configurations["baseline"] = old
    print(f"{2 * args.count} images of 36 MP in {args.folder} (half RGBA PNG, half JPEG)")
    print("| configuration | round | seconds | peak RSS (MiB) | resident after (MiB) |")
    print("| --- | --- | --- | --- | --- |")
    for round_index in range(args.rounds):  # interleaved, so drift hits every configuration
        for name, root in configurations.items():
            kind = "recipe" if name == "recipe" else "project"
            figures = run(kind, args.folder, root)
            print(f"| {name} | {round_index + 1} | {figures['seconds']:.1f} | "
                  f"{figures['peak_mib']:.0f} | {figures['resident_after_mib']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
