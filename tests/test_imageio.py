"""load_image / open_rgb: any decodable file in, (S, S, 3) uint8 RGB out."""

import io
import json
import struct
from pathlib import Path
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from conftest import BLUE, GREEN, RED, REPO_ROOT, assert_color_near, make_image, make_noise_image
from pyimagesearch import imageio
from pyimagesearch.imageio import MAX_DECODED_PIXELS, UnreadableImageError, load_image, open_rgb

SIZE = 16
WHITE = (255, 255, 255)


def assert_rgb8(array, size=SIZE):
    assert isinstance(array, np.ndarray)
    assert array.shape == (size, size, 3)
    assert array.dtype == np.uint8


# --- recognised by content, not by name --------------------------------------

@pytest.mark.parametrize(
    "name, image_format",
    [
        ("00000021.jpg?resize=1196,1196", "JPEG"),
        ("x.png:large", "PNG"),
        ("png named.jpg", "PNG"),
        ("jpeg named.png", "JPEG"),
        ("no extension", "PNG"),
    ],
)
def test_format_comes_from_content_not_name(tmp_path, name, image_format):
    path = make_image(tmp_path / name, color=RED, format=image_format)
    array = load_image(path, SIZE)
    assert_rgb8(array)
    assert_color_near(array[SIZE // 2, SIZE // 2], RED)


# --- files that are not images -----------------------------------------------

def _truncated(tmp_path, name, image_format, **save_args):
    path = make_noise_image(tmp_path / "whole", format=image_format, **save_args)
    data = Path(path).read_bytes()
    target = tmp_path / name
    target.write_bytes(data[: len(data) // 2])
    return target


UNREADABLE = {
    ".DS_Store": lambda tmp_path: _write(tmp_path / ".DS_Store", b"\x00\x00\x00\x01Bud1" + bytes(2048)),
    "text": lambda tmp_path: _write(tmp_path / "notes.txt", b"gotta catch em all\n" * 10),
    "zero bytes": lambda tmp_path: _write(tmp_path / "empty.png", b""),
    "random bytes .jpg": lambda tmp_path: _write(
        tmp_path / "random.jpg", np.random.default_rng(1).bytes(4096)),
    "truncated JPEG": lambda tmp_path: _truncated(tmp_path, "half.jpg", "JPEG"),
    "truncated PNG": lambda tmp_path: _truncated(tmp_path, "half.png", "PNG"),
    "truncated progressive JPEG": lambda tmp_path: _truncated(
        tmp_path, "half-progressive.jpg", "JPEG", progressive=True),
    "HTML saved as .jpg": lambda tmp_path: _write(
        tmp_path / "page.jpg", b"<!DOCTYPE html><html><body>403 Forbidden</body></html>"),
}


def _write(path, data):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("case", UNREADABLE)
def test_non_images_raise_unreadable_image_error_naming_the_file(tmp_path, case):
    path = UNREADABLE[case](tmp_path)
    with pytest.raises(UnreadableImageError) as excinfo:
        load_image(path, SIZE)
    assert str(path) in str(excinfo.value)
    assert "\n" not in str(excinfo.value)  # one line, fit for a warning


@pytest.mark.parametrize("failure", [
    PermissionError(13, "Permission denied"),  # root in CI reads any file, so simulated
    ZeroDivisionError("division by zero"),  # a decoder bug
    SyntaxError("first line\nsecond line"),  # PIL's own kinds keep their first line only
    MemoryError(),
    RuntimeError("first line\nsecond line"),  # the catch-all branch keeps one line too
])
def test_any_decoder_failure_is_one_line_naming_the_file_that_value_error_catches(
        tmp_path, monkeypatch, failure):
    """Callers (the dataset scanner, classify.py, library users with `except ValueError`)
    must never see a raw PIL or OS exception kill a run over one bad file."""
    path = make_image(tmp_path / "fine.png", color=RED)

    def broken_decoder(image, *args, **kwargs):
        raise failure
    monkeypatch.setattr(imageio.ImageOps, "exif_transpose", broken_decoder)
    try:
        load_image(path, SIZE)
    except ValueError as error:
        assert isinstance(error, UnreadableImageError)
        assert str(path) in str(error) and "\n" not in str(error)
    else:
        pytest.fail("no error raised")


def test_missing_file_raises(tmp_path):
    path = tmp_path / "nope.png"
    with pytest.raises(UnreadableImageError, match="not found") as excinfo:
        load_image(path, SIZE)
    assert str(path) in str(excinfo.value)


def test_directory_raises(tmp_path):
    folder = tmp_path / "a folder.png"
    folder.mkdir()
    with pytest.raises(UnreadableImageError) as excinfo:
        load_image(folder, SIZE)
    assert str(folder) in str(excinfo.value)


# --- every mode becomes 8-bit RGB ---------------------------------------------

@pytest.mark.parametrize("image_format", ["PNG", "JPEG"])
def test_grayscale_becomes_three_equal_channels(tmp_path, image_format):
    path = make_image(tmp_path / "gray", mode="L", color=100, format=image_format)
    array = load_image(path, SIZE)
    assert_rgb8(array)
    assert_color_near(array[5, 5], (100, 100, 100), tolerance=3)


def test_rgba_transparent_pixels_become_white(tmp_path):
    image = Image.new("RGBA", (32, 32), (0, 0, 0, 0))  # transparent black
    image.paste((*BLUE, 255), (0, 0, 16, 32))  # left half opaque blue
    path = tmp_path / "sprite.png"
    image.save(path)
    array = load_image(path, SIZE)
    assert_rgb8(array)
    assert_color_near(array[8, 2], BLUE)
    assert_color_near(array[8, 13], WHITE)  # not black


def test_grayscale_with_alpha_transparent_pixels_become_white(tmp_path):
    image = Image.new("LA", (32, 32), (0, 0))
    image.paste((50, 255), (0, 0, 16, 32))
    path = tmp_path / "la.png"
    image.save(path)
    array = load_image(path, SIZE)
    assert_color_near(array[8, 2], (50, 50, 50))
    assert_color_near(array[8, 13], WHITE)


def test_palette_png_with_transparency(tmp_path):
    image = Image.new("P", (32, 32), 0)
    image.putpalette([0, 0, 0, *GREEN] + [0] * (254 * 3))
    image.paste(1, (0, 0, 16, 32))  # left half green, right half index 0
    path = tmp_path / "palette.png"
    image.save(path, transparency=0)
    with Image.open(path) as check:
        assert check.mode == "P" and check.info.get("transparency") == 0
    array = load_image(path, SIZE)
    assert_rgb8(array)
    assert_color_near(array[8, 2], GREEN)
    assert_color_near(array[8, 13], WHITE)  # index 0 is transparent black


def test_rgb_png_with_transparent_colour_key(tmp_path):
    image = Image.new("RGB", (32, 32), (0, 0, 0))
    image.paste(RED, (0, 0, 16, 32))
    path = tmp_path / "trns.png"
    image.save(path, transparency=(0, 0, 0))  # tRNS chunk: black is transparent
    array = load_image(path, SIZE)
    assert_color_near(array[8, 2], RED)
    assert_color_near(array[8, 13], WHITE)


def test_16_bit_grayscale_is_scaled_not_clipped(tmp_path):
    pixels = np.full((32, 32), 40000, dtype=np.uint16)
    pixels[:, 16:] = 10000
    path = tmp_path / "depth.png"
    Image.fromarray(pixels).save(path)
    with Image.open(path) as check:
        assert check.mode.startswith("I")  # really a 16-bit file
    array = load_image(path, SIZE)
    assert_rgb8(array)
    assert_color_near(array[8, 2], (round(40000 / 257),) * 3, tolerance=2)  # ~156, not 255
    assert_color_near(array[8, 13], (round(10000 / 257),) * 3, tolerance=2)  # ~39


def test_cmyk_jpeg(tmp_path):
    path = make_image(tmp_path / "print.jpg", mode="CMYK", color=(0, 255, 255, 0), format="JPEG")
    with Image.open(path) as check:
        assert check.mode == "CMYK"
    array = load_image(path, SIZE)
    assert_rgb8(array)
    assert_color_near(array[8, 8], (255, 0, 0), tolerance=20)  # red, not cyan


def test_one_pixel_image(tmp_path):
    path = make_image(tmp_path / "dot.png", size=(1, 1), color=GREEN)
    array = load_image(path, SIZE)
    assert_rgb8(array)
    assert (array == GREEN).all()


def test_animated_gif_gives_first_frame(tmp_path):
    frames = [Image.new("RGB", (32, 32), color) for color in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    with Image.open(path) as check:
        assert check.n_frames == 3
    array = load_image(path, SIZE)
    assert_rgb8(array)
    assert_color_near(array[8, 8], (255, 0, 0))


@pytest.mark.parametrize(
    "image_format, save_args, tolerance",
    [("BMP", {}, 0), ("TIFF", {}, 0), ("WEBP", {"quality": 90}, 12), ("GIF", {}, 0)],
)
def test_other_formats(tmp_path, image_format, save_args, tolerance):
    if image_format == "WEBP" and not _pil_supports("WEBP"):
        pytest.skip("Pillow built without WebP")
    color = (255, 0, 0) if image_format == "GIF" else RED  # GIF: exact palette colour
    path = make_image(tmp_path / f"image.{image_format.lower()}", color=color,
                      format=image_format, **save_args)
    array = load_image(path, SIZE)
    assert_rgb8(array)
    assert_color_near(array[8, 8], color, tolerance=tolerance)


def _pil_supports(image_format):
    try:
        Image.new("RGB", (1, 1)).save(io.BytesIO(), format=image_format)
    except (KeyError, OSError):
        return False
    return True


@pytest.mark.parametrize("image_size", [8, 32, 64])
def test_resized_to_requested_square(tmp_path, image_size):
    path = make_image(tmp_path / "wide.png", size=(50, 20), color=BLUE)
    array = load_image(path, image_size)
    assert_rgb8(array, image_size)
    assert_color_near(array[0, 0], BLUE)


def test_large_jpeg_is_draft_decoded_but_still_big_enough(tmp_path):
    path = make_image(tmp_path / "big.jpg", size=(800, 600), color=RED, format="JPEG")
    image = open_rgb(path, 64)
    assert image.mode == "RGB"
    assert min(image.size) >= 64  # never decoded smaller than asked
    assert image.size[0] < 800  # but JPEG draft mode did reduce it


# --- EXIF orientation ---------------------------------------------------------

def _exif_rotated_jpeg(path, orientation):
    """A 32x16 (wide) JPEG, red left half and blue right half, with EXIF Orientation."""
    image = Image.new("RGB", (32, 16), RED)
    image.paste(BLUE, (16, 0, 32, 16))
    exif = Image.Exif()
    exif[0x0112] = orientation
    image.save(path, format="JPEG", exif=exif, quality=95)
    return path


def test_exif_orientation_is_applied(tmp_path):
    path = _exif_rotated_jpeg(tmp_path / "phone.jpg", orientation=6)  # rotate 90 CW
    image = open_rgb(path, 16)
    assert image.size == (16, 32)  # upright: now tall
    pixels = np.asarray(image)
    # 90 degrees clockwise puts the stored left half (red) on top.
    assert_color_near(pixels[4, 8], RED, tolerance=20)
    assert_color_near(pixels[27, 8], BLUE, tolerance=20)


def test_exif_orientation_survives_jpeg_draft_reduction(tmp_path):
    path = _exif_rotated_jpeg(tmp_path / "phone.jpg", orientation=6)
    width, height = open_rgb(path, 8).size  # draft mode may decode at 1/2 scale
    assert height == 2 * width and width >= 8


def test_exif_orientation_reaches_load_image(tmp_path):
    path = _exif_rotated_jpeg(tmp_path / "phone.jpg", orientation=6)
    array = load_image(path, SIZE)
    assert_color_near(array[2, 8], RED, tolerance=20)
    assert_color_near(array[13, 8], BLUE, tolerance=20)


def test_orientation_1_is_left_alone(tmp_path):
    path = _exif_rotated_jpeg(tmp_path / "normal.jpg", orientation=1)
    image = open_rgb(path, 16)
    assert image.size == (32, 16)


# --- decompression bombs ------------------------------------------------------

def _png_claiming_size(path, width, height):
    """A tiny PNG whose IHDR says width x height (CRC fixed so PIL accepts it)."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), RED).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    # 8-byte signature, then IHDR: length(4) "IHDR"(4) width(4) height(4) ... CRC.
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


def _png_bomb(path, width, height):
    """A real 1-bit PNG of width x height black pixels: ~50 KB on disk, yet PIL
    would allocate width*height bytes to decode it and 3x that as RGB."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    row = bytes(1 + (width + 7) // 8)  # filter byte + packed bits, all zero
    compressor = zlib.compressobj(9)
    pixels = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grayscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels)
                     + chunk(b"IEND", b""))
    return path


def test_decompression_bomb_is_refused_without_allocating(tmp_path):
    path = _png_bomb(tmp_path / "bomb.png", 20000, 20000)
    assert path.stat().st_size < 1_000_000
    # In a fresh process, and VmHWM rather than ru_maxrss: Linux carries
    # ru_maxrss over from the forking parent (a pytest worker that may have
    # TensorFlow loaded), whose peak would hide any allocation made here. The
    # same script then allocates 300 MB on purpose, to show the gauge moves.
    script = ("import json, re, sys\n"
              "import numpy as np\n"
              "from pyimagesearch.imageio import UnreadableImageError, load_image\n"
              "def peak_mb():\n"
              "    status = open('/proc/self/status').read()\n"
              "    return int(re.search(r'VmHWM:\\s+(\\d+) kB', status).group(1)) / 1024\n"
              "before = peak_mb()\n"
              "try:\n"
              "    load_image(sys.argv[1], 16)\n"
              "    error = None\n"
              "except UnreadableImageError as raised:\n"
              "    error = str(raised)\n"
              "after = peak_mb()\n"
              "ballast = np.ones(300 * 2**20, dtype=np.uint8)\n"
              "print(json.dumps({'error': error, 'refusing_mb': after - before,\n"
              "                  'ballast_mb': peak_mb() - after}))\n")
    result = subprocess.run([sys.executable, "-c", script, str(path)], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["error"] and "too large" in report["error"] and str(path) in report["error"]
    assert report["ballast_mb"] > 250, report  # the gauge sees a 300 MB allocation
    # Decoding it takes ~2.3 GB by this gauge (400 MP as L, then as RGB); refusing it
    # must cost next to nothing.
    assert report["refusing_mb"] < 50, report


def test_header_claiming_a_huge_size_is_refused(tmp_path):
    path = _png_claiming_size(tmp_path / "liar.png", 20000, 20000)
    with Image.open(path) as check:
        assert check.size == (20000, 20000)  # the patched header really claims 400 MP
    with pytest.raises(UnreadableImageError, match="too large") as excinfo:
        load_image(path, SIZE)
    assert str(path) in str(excinfo.value)


def test_image_at_the_pixel_limit_edge_is_judged_by_header(tmp_path):
    # Just over the limit: refused from the header alone (the pixel data is 8x8).
    side = int(MAX_DECODED_PIXELS ** 0.5) + 1
    path = _png_claiming_size(tmp_path / "edge.png", side, side)
    with pytest.raises(UnreadableImageError, match="too large"):
        load_image(path, SIZE)
