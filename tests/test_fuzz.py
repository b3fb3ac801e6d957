"""Fuzz the image loader: random and mutated bytes give an image or our own error."""

import io

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from pyimagesearch.imageio import UnreadableImageError, load_image


def _seed_files():
    """Small valid files of each format, to mutate: random bytes alone rarely get past a header."""
    seeds = []
    for fmt, mode in (("PNG", "RGBA"), ("JPEG", "RGB"), ("GIF", "P"), ("BMP", "RGB"),
                      ("TIFF", "RGB"), ("WEBP", "RGB")):
        buffer = io.BytesIO()
        pixels = np.random.default_rng(0).integers(0, 256, (12, 12, 4), dtype=np.uint8)
        Image.fromarray(pixels, "RGBA").convert(mode).save(buffer, format=fmt)
        seeds.append(buffer.getvalue())
    return seeds


SEEDS = _seed_files()

mutated = st.tuples(st.sampled_from(SEEDS),
                    st.lists(st.tuples(st.integers(0, 4095), st.integers(0, 255)), max_size=8),
                    st.integers(0, 4096)).map(
    lambda case: _mutate(*case))


def _mutate(data, flips, cut):
    data = bytearray(data)
    for position, value in flips:
        data[position % len(data)] = value
    return bytes(data[: max(1, len(data) - cut % len(data))])


def check(tmp_path, data):
    path = tmp_path / "fuzz.img"
    path.write_bytes(data)
    try:
        image = load_image(str(path), 16)
    except UnreadableImageError as error:
        assert str(path) in str(error) and "\n" not in str(error)
        return
    assert image.shape == (16, 16, 3) and image.dtype == np.uint8


# Bounded: about 400 cases in all, well under 30 s on a 2-core machine.
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=2048))
def test_random_bytes(tmp_path, data):
    check(tmp_path, data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutated)
def test_mutated_valid_images(tmp_path, data):
    check(tmp_path, data)
