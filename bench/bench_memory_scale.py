"""Does training's memory grow with the dataset? Peak RSS of train.py on 1,000 vs 100,000 images.

What is measured: the real train.py in a fresh process (wait4's ru_maxrss, the same way
bench_shift.py measures), the same flags for both sizes, whole epochs (train.py has no
step cap): the decoded-image cache build, the group split (hashes of every file), the
epoch(s) of training and validation, and the writing of the model, report and LiteRT copy.
Target: the 100,000-image peak at most 1.2x the 1,000-image one.

The images: N small PNGs (--file-size px, 32 by default) made by augmentation from the
649-class Pokedex frames (scripts/build_pokedex649.py) of the first --classes species:
a random crop of 75-100% of the side, a mirror half of the time, brightness, contrast and
colour jitter of +-25%. Deterministic for a seed; each size is its own folder under
bench/data/memscale/ (reused when complete), its own cache and model.

    python bench/bench_memory_scale.py                     # 1,000 and 100,000 images
    python bench/bench_memory_scale.py --sizes 1000 20000  # a quicker look
"""

import argparse
import json
import os
import random
import subprocess
import sys
import time

from PIL import Image, ImageEnhance, ImageOps

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = os.path.join(REPO, "bench", "data", "pokedex649", "train")
DATA = os.path.join(REPO, "bench", "data", "memscale")
RESULTS = os.path.join(REPO, "bench", "results", "memscale")
TARGET_RATIO = 1.2


def source_frames(classes):
    """{class name: [frame paths]} of the first `classes` species of the 649-class set."""
    if not os.path.isdir(SOURCE):
        raise SystemExit(f"error: {SOURCE} is missing; build it first with "
                         "scripts/build_pokedex649.py (README: A 649-class Pokedex)")
    names = sorted(name for name in os.listdir(SOURCE)
                   if os.path.isdir(os.path.join(SOURCE, name)))[:classes]
    return {name: sorted(os.path.join(SOURCE, name, file)
                         for file in os.listdir(os.path.join(SOURCE, name))) for name in names}


def augmented(path, rng, size):
    """One random variant of the frame at `path`, `size` px square."""
    with Image.open(path) as frame:
        image = frame.convert("RGB")
    side = image.width
    crop = int(side * rng.uniform(0.75, 1.0))
    left, top = rng.randint(0, side - crop), rng.randint(0, side - crop)
    image = image.crop((left, top, left + crop, top + crop)).resize((size, size),
                                                                    Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        image = ImageOps.mirror(image)
    for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        image = enhancer(image).enhance(rng.uniform(0.75, 1.25))
    return image


def generate(count, classes, size, seed):
    """bench/data/memscale/n<count>/<class>/<index>.png, unless already complete."""
    folder = os.path.join(DATA, f"n{count}")
    done = os.path.join(folder, ".complete")
    if os.path.exists(done):
        return folder
    frames = source_frames(classes)
    names = sorted(frames)
    rng = random.Random(seed)
    started = time.time()
    for name in names:
        os.makedirs(os.path.join(folder, name), exist_ok=True)
    for index in range(count):
        name = names[index % len(names)]  # equal classes
        image = augmented(rng.choice(frames[name]), rng, size)
        image.save(os.path.join(folder, name, f"{index:06d}.png"), compress_level=1)
        if (index + 1) % 10000 == 0:
            print(f"[INFO] n{count}: {index + 1} images, {time.time() - started:.0f} s",
                  flush=True)
    open(done, "w").close()
    print(f"[INFO] generated {count} images in {time.time() - started:.0f} s: {folder}",
          flush=True)
    return folder


def train(folder, count, args):
    """train.py on `folder` in a fresh process: wall seconds and peak RSS (MiB)."""
    out = os.path.join(RESULTS, f"n{count}")
    os.makedirs(out, exist_ok=True)
    command = [sys.executable, "train.py", "--dataset", folder,
               "--model", os.path.join(out, "m.model"), "--labelbin", os.path.join(out, "lb.pickle"),
               "--plot", os.path.join(out, "plot.png"), "--cache-dir", os.path.join(out, "cache"),
               "--image-size", str(args.image_size), "--epochs", str(args.epochs),
               "--batch-size", str(args.batch_size), "--restart", "--seed", str(args.seed)]
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    with open(os.path.join(out, "train.log"), "w") as log:
        started = time.time()
        child = subprocess.Popen(command, cwd=REPO, env=environment, stdout=log,
                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(child.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"train.py on n{count} failed with exit code {code}; see {out}/train.log")
    return {"images": count, "wall_seconds": round(time.time() - started, 1),
            "peak_rss_mib": round(usage.ru_maxrss / 1024, 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[1000, 100000],
                        metavar=("SMALL", "LARGE"), help="image counts (default: 1000 100000)")
    parser.add_argument("--classes", type=int, default=50,
                        help="species the images are drawn from (default: 50)")
    parser.add_argument("--file-size", type=int, default=32, help="px of the generated files")
    parser.add_argument("--image-size", type=int, default=32, help="train.py --image-size")
    parser.add_argument("--epochs", type=int, default=1, help="train.py --epochs (whole epochs)")
    parser.add_argument("--batch-size", type=int, default=64, help="train.py --batch-size")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    results = []
    for count in args.sizes:
        folder = generate(count, args.classes, args.file_size, args.seed)
        print(f"[INFO] training on n{count} ...", flush=True)
        results.append(train(folder, count, args))
        print(f"[INFO] n{count}: {results[-1]}", flush=True)
    small, large = results
    ratio = large["peak_rss_mib"] / small["peak_rss_mib"]
    print(f"\nMeasured: peak RSS (ru_maxrss of the child) of one fresh `train.py --image-size "
          f"{args.image_size} --epochs {args.epochs} --batch-size {args.batch_size}` process per "
          f"size: cache build, split, whole epoch(s), model and report written; {args.classes} "
          f"classes, {args.file_size}-px augmented sprite PNGs.")
    for result in results:
        print(f"  {result['images']:>7,} images: peak RSS {result['peak_rss_mib']:7.1f} MiB, "
              f"wall {result['wall_seconds']:7.1f} s")
    verdict = "within" if ratio <= TARGET_RATIO else "OVER"
    print(f"  ratio {large['images'] // small['images']}x the images -> {ratio:.2f}x the peak RSS "
          f"({verdict} the {TARGET_RATIO}x target)")
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "summary.json"), "w") as handle:
        json.dump({"settings": vars(args), "results": results, "ratio": ratio}, handle, indent=1)


if __name__ == "__main__":
    main()
