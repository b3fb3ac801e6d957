"""Photographs of things that are not Pokemon, for the unknown-answer bench.

    /tmp/datavenv/bin/python bench/build_photos.py --output bench/data/photos

Writes 6 square crops (40-100% of the short side, seeded) of each of 17 of
scikit-image's bundled photographs (a cat, coffee, a rocket, an astronaut,
coins, bricks, text, cells, ...) as PNGs: 102 images. Needs scikit-image (the
data venv: pip install scikit-image); nothing is downloaded.
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
    args = parser.parse_args()
    import skimage.data

    os.makedirs(args.output, exist_ok=True)
    rng = random.Random(args.seed)
    for name in PHOTOS:
        image = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
        width, height = image.size
        for index in range(CROPS):
            side = round(min(width, height) * (1.0 if index == 0 else rng.uniform(0.4, 1.0)))
            left, top = rng.randint(0, width - side), rng.randint(0, height - side)
            crop = image.crop((left, top, left + side, top + side))
            crop.save(os.path.join(args.output, f"{name}-{index}.png"))
    print(f"wrote {len(PHOTOS) * CROPS} photographs to {args.output}")


if __name__ == "__main__":
    main()
