"""A corpus of hostile and broken files, generated here, through the dataset scanner.

Every file must either load as an image or be skipped with exactly one warning
line naming it; nothing crashes, and loading the whole corpus stays under 1 GB.
"""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pyimagesearch import dataset
from conftest import make_image, make_noise_image
from test_imageio import _png_bomb

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def jpeg_bytes(color=(200, 30, 30), size=(32, 32), **options):
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="JPEG", **options)
    return buffer.getvalue()


def build_corpus(root):
    """Return {relative path: True if it must load, False if it must be skipped}."""
    good, bad = root / "good", root / "bad"
    expected = {}

    def add(path, loads):
        expected[os.path.relpath(path, root)] = loads

    add(make_image(good / "png named.jpg", format="PNG"), True)
    add(make_image(good / "jpeg named.png", format="JPEG"), True)
    add(make_image(good / "00000021.jpg?resize=1196,1196", format="JPEG"), True)
    add(make_image(good / "x.png:large"), True)
    add(make_image(good / "cmyk.jpg", mode="CMYK", color=(0, 200, 200, 0), format="JPEG"), True)
    sixteen = good / "sixteen.png"
    Image.fromarray(np.full((16, 16), 40000, dtype=np.uint16)).save(sixteen)
    add(sixteen, True)
    palette = Image.new("P", (16, 16), 1)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.save(good / "palette.png", transparency=0)
    add(good / "palette.png", True)
    add(make_image(good / "one pixel.png", size=(1, 1)), True)
    frames = [Image.new("RGB", (16, 16), c) for c in ((0, 0, 255), (255, 0, 0))]
    frames[0].save(good / "animated.gif", save_all=True, append_images=frames[1:])
    add(good / "animated.gif", True)
    for fmt, name in (("WEBP", "w.webp"), ("BMP", "b.bmp"), ("TIFF", "t.tiff")):
        add(make_image(good / name, format=fmt), True)
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = good / "rotated.jpg"
    rotated.write_bytes(jpeg_bytes(size=(32, 16), exif=exif.tobytes()))
    add(rotated, True)
    add(make_image(good / "ünïcödé ☆ name?.png"), True)

    bad.mkdir()
    whole_jpeg = make_noise_image(bad / "whole.jpg", format="JPEG")
    (bad / "truncated.jpg").write_bytes(Path(whole_jpeg).read_bytes()[:1500])
    os.remove(whole_jpeg)
    add(bad / "truncated.jpg", False)
    whole_png = make_noise_image(bad / "whole.png")
    (bad / "truncated.png").write_bytes(Path(whole_png).read_bytes()[:3000])
    os.remove(whole_png)
    add(bad / "truncated.png", False)
    (bad / "zero.jpg").write_bytes(b"")
    add(bad / "zero.jpg", False)
    (bad / "random.png").write_bytes(np.random.default_rng(1).bytes(4096))
    add(bad / "random.png", False)
    (bad / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(200))
    add(bad / ".DS_Store", False)
    add(_png_bomb(bad / "bomb.png", 20000, 20000), False)
    # A symlink loop among loadable images: folder links are never followed, so
    # nothing under good/loop/ may appear (and the scan must not hang).
    os.symlink(good, good / "loop")
    return expected


def test_every_corpus_file_loads_or_is_skipped_with_one_line(tmp_path):
    root = tmp_path / "corpus"
    expected = build_corpus(root)
    lines = []
    folder = dataset.load_image_folder(str(root), 32, str(tmp_path / "cache"), log=lines.append)
    loaded = set(folder.paths)
    warnings = [line for line in lines if "skipped" in line]
    for path, loads in expected.items():
        if loads:
            assert path in loaded, (path, warnings)
        else:
            assert path not in loaded
            assert sum(f"skipped {path}:" in line for line in warnings) == 1, (path, warnings)
    assert len(folder.skipped) == len(warnings) == sum(not v for v in expected.values())
    assert folder.images.shape == (len(loaded), 32, 32, 3)
    assert not any("loop" in path for path in loaded)


def test_loading_the_corpus_stays_under_one_gigabyte(tmp_path):
    """Measured in a fresh process (no TensorFlow), so only loading counts."""
    build_corpus(tmp_path / "corpus")
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking
    # parent (a pytest worker with TensorFlow loaded), VmHWM is this program's.
    script = ("import json, re, sys; from pyimagesearch import dataset; "
              "f = dataset.load_image_folder(sys.argv[1], 96, sys.argv[2], log=lambda m: None); "
              "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()); "
              "print(json.dumps({'loaded': len(f.paths), 'peak_kb': int(hwm.group(1))}))")
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "corpus"),
                             str(tmp_path / "cache")], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["loaded"] > 10
    assert report["peak_kb"] / 1024 < 1024, report


def test_file_that_vanishes_between_listing_and_reading(tmp_path, monkeypatch):
    root = tmp_path / "data"
    make_image(root / "a" / "stays.png")
    make_image(root / "a" / "goes.png")
    make_image(root / "b" / "other.png")
    real_load = dataset.load_image

    def load_after_delete(path, image_size):
        if path.endswith("goes.png") and os.path.exists(path):
            os.remove(path)  # deleted after the listing, before the decode
        return real_load(path, image_size)

    monkeypatch.setattr(dataset, "load_image", load_after_delete)
    lines = []
    folder = dataset.load_image_folder(str(root), 16, str(tmp_path / "cache"), log=lines.append)
    assert sorted(folder.paths) == [os.path.join("a", "stays.png"), os.path.join("b", "other.png")]
    assert len(folder.skipped) == 1 and "goes.png" in folder.skipped[0]
    assert sum("goes.png" in line for line in lines) == 1
