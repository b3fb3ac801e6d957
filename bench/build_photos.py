"""Photographs of things that are not Pokemon, for the unknown-answer bench.

    /tmp/datavenv/bin/python bench/build_photos.py --output bench/data/photos

Writes 6 square crops (40-100% of the short side, seeded) of each of 17 of
scikit-image's bundled photographs (a cat, coffee, a rocket, an astronaut,
coins, bricks, text, cells, ...) as PNGs: 102 images; with --more, also of
scikit-learn's two sample photographs (a temple in China, a flower) and
matplotlib's Grace Hopper: 120. Needs scikit-image (and scikit-learn and
matplotlib for --more: the project's venv has all three); nothing is downloaded.
"""

import argparse
import os
import random

from PIL import Image

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field",
          "immunohistochemistry", "retina", "colorwheel", "camera", "coins", "moon", "brick",
          "grass", "gravel", "clock", "cell", "page")
CROPS = 6


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", default="bench/data/photos")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--more", action="store_true",
                        help="add scikit-learn's and matplotlib's bundled photographs")
    args = parser.parse_args()
    import skimage.data

    os.makedirs(args.output, exist_ok=True)
    rng = random.Random(args.seed)
    sources = [(name, lambda name=name: getattr(skimage.data, name)()) for name in PHOTOS]
    if args.more:
        import matplotlib.cbook
        import numpy as np
        from sklearn.datasets import load_sample_images

        samples = load_sample_images()
        for file_name, pixels in zip(samples.filenames, samples.images):
            name = os.path.splitext(os.path.basename(file_name))[0]
            sources.append((name, lambda pixels=pixels: pixels))
        with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as handle:
            hopper = np.asarray(Image.open(handle).convert("RGB"))
        sources.append(("grace_hopper", lambda: hopper))
    for name, read in sources:
        image = Image.fromarray(read()).convert("RGB")
        width, height = image.size
        for index in range(CROPS):
            side = round(min(width, height) * (1.0 if index == 0 else rng.uniform(0.4, 1.0)))
            left, top = rng.randint(0, width - side), rng.randint(0, height - side)
            crop = image.crop((left, top, left + side, top + side))
            crop.save(os.path.join(args.output, f"{name}-{index}.png"))
    print(f"wrote {len(sources) * CROPS} photographs to {args.output}")


if __name__ == "__main__":
    main()
