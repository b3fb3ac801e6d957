"""Review 23's image and dataset items: globs and symlink loops, non-regular files,
small files that decode to gigabytes, the decoded cache's content check.

Anything that hung or blew up before the fix runs in a fresh Python with a
timeout (and, for memory, a limit of its own), so a regression fails the test
instead of hanging the suite or the machine.
"""

import json
import os
import struct
import subprocess
import sys
import zlib

import pytest

from conftest import REPO_ROOT, make_image, make_noise_image, run_without_tensorflow


def run_python(code, *args, timeout=60, memory_mb=None, cwd=REPO_ROOT):
    """Run `code` in a fresh Python (the repo importable); return the CompletedProcess.

    memory_mb: an address-space limit (RLIMIT_AS) of its own, so an unbounded
    decode raises MemoryError there instead of taking the machine.
    """
    def limit():
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_mb * 2**20, memory_mb * 2**20))

    return subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, PYTHONPATH=REPO_ROOT, OPENBLAS_NUM_THREADS="1"),
                          preexec_fn=limit if memory_mb else None)


# --- item 8: a ** glob never follows a symlinked folder ------------------------

def test_a_double_star_glob_lists_each_file_once_despite_symlink_loops(tmp_path):
    """`up -> ..` made Python's glob list a file 41 times; two such links hung it."""
    root = tmp_path / "my photos"
    make_image(root / "red one.png")
    make_image(root / "sub dir" / "blue two.png")
    os.symlink("..", root / "sub dir" / "up")
    os.symlink("../..", root / "sub dir" / "up two")
    code = ("import json, sys\n"
            "from pyimagesearch.imageio import find_images\n"
            "print(json.dumps([find_images(spec) for spec in sys.argv[1:]]))\n")
    specs = [f"{root}/**/*.png", f"{root}/**", "my photos/**/*.png"]
    result = run_python(code, *specs, timeout=30, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    absolute, trailing, relative = json.loads(result.stdout)
    assert sorted(absolute) == [f"{root}/red one.png", f"{root}/sub dir/blue two.png"]
    assert sorted(map(os.path.realpath, trailing)) == sorted(map(os.path.realpath, absolute))
    assert sorted(relative) == ["my photos/red one.png", "my photos/sub dir/blue two.png"]


# --- item 12: a FIFO (any non-regular file) is skipped, never opened ------------

def test_a_fifo_in_a_classify_folder_or_glob_is_skipped_with_one_line(tmp_path):
    """Opening a FIFO blocks until a writer comes: forever, and the pool ignored SIGTERM."""
    root = tmp_path / "my photos"
    make_image(root / "red one.png")
    os.mkfifo(root / "pipe.png")
    code = ("import json, sys\n"
            "from pyimagesearch.imageio import find_images, screen_images, UnreadableImageError,"
            " load_image\n"
            "skipped = []\n"
            "kept = [screen_images(find_images(spec), lambda path, line: skipped.append(line))"
            " for spec in sys.argv[1:]]\n"
            "try:\n"
            "    load_image(sys.argv[1] + '/pipe.png', 8)\n"
            "except UnreadableImageError as error:\n"
            "    skipped.append(str(error))\n"
            "print(json.dumps([kept, skipped]))\n")
    result = run_python(code, root, f"{root}/*.png", timeout=30)
    assert result.returncode == 0, result.stderr
    kept, skipped = json.loads(result.stdout)
    assert kept == [[f"{root}/red one.png"]] * 2
    assert skipped == [f"{root}/pipe.png: not a regular file but a FIFO (named pipe)"] * 3


def test_a_fifo_in_a_dataset_class_folder_is_skipped_with_one_line(tmp_path):
    root = tmp_path / "my data"
    for name in ("red", "blue"):
        (root / name).mkdir(parents=True)
        make_noise_image(root / name / "one.png", size=(12, 12))
    os.mkfifo(root / "red" / "pipe.png")
    code = ("import sys\n"
            "from pyimagesearch.dataset import load_image_folder\n"
            "folder = load_image_folder(sys.argv[1], 8, sys.argv[2], log=print)\n"
            "print('rows', len(folder.paths))\n")
    result = run_python(code, root, tmp_path / "cache", timeout=60)
    assert result.returncode == 0, result.stderr
    assert "[WARNING] skipped red/pipe.png: not a regular file but a FIFO (named pipe)" \
        in result.stdout.splitlines()
    assert "rows 2" in result.stdout


# --- item 17: a cache folder that is a file or read-only ------------------------

def test_a_cache_folder_that_is_a_file_is_one_line_naming_cache_dir(tmp_path):
    from pyimagesearch import dataset

    root = tmp_path / "my data"
    for name in ("red", "blue"):
        (root / name).mkdir(parents=True)
        make_noise_image(root / name / "one.png", size=(12, 12))
    a_file = tmp_path / "a file"
    a_file.write_text("not a folder")
    for cache in (a_file, a_file / "inside"):
        with pytest.raises(dataset.DatasetError) as caught:
            dataset.load_image_folder(root, 8, cache, log=lambda _: None)
        assert str(caught.value).startswith("decoded-image cache: cannot write ")
        assert f"{a_file} is a file, not a folder; pass --cache-dir" in str(caught.value)
    if os.geteuid() != 0:  # root writes in a read-only folder, so only a user can see this
        read_only = tmp_path / "read only"
        read_only.mkdir(mode=0o555)
        with pytest.raises(dataset.DatasetError, match="no permission to write in .*--cache-dir"):
            dataset.load_image_folder(root, 8, read_only, log=lambda _: None)


def test_prepare_py_with_a_file_as_cache_dir_exits_2_with_one_line(tmp_path):
    """It printed only "afile: File exists" (exit 1), after TensorFlow's start; train.py,
    evaluate.py and doctor.py reach the same check through the loader."""
    import hashlib

    root = tmp_path / "my data"
    (root / "red").mkdir(parents=True)
    make_noise_image(root / "red" / "one.png", size=(12, 12))
    (tmp_path / "a file").write_text("x")
    error = run_without_tensorflow("prepare", ["--dataset", root, "--output", tmp_path / "out put",
                                               "--cache-dir", tmp_path / "a file",
                                               "--image-size", 8], cwd=tmp_path)
    digest = hashlib.sha1(str(root).encode()).hexdigest()[:16]
    assert error.strip().splitlines() == [
        f"prepare.py: error: decoded-image cache: cannot write {tmp_path / 'a file'}/"
        f"my data-{digest}-8px.lock: {tmp_path / 'a file'} is a file, not a folder; "
        "pass --cache-dir a writable folder (or set POKEDEX_CACHE_DIR)"]


# --- item 10: small files that decode to gigabytes -------------------------------

def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_png(path, width, height, bit_depth, colour_type, extra_chunks=b"", rows=None):
    """A real PNG of all-zero samples: a few hundred KB on disk however large it says it is
    (rows: how many rows to write, for a file refused from its header alone)."""
    chunk = png_chunk
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour_type]
    row = bytes(1 + (width * channels * bit_depth + 7) // 8)  # filter byte + samples
    compressor = zlib.compressobj(9)
    count = height if rows is None else rows
    pixels = b"".join(compressor.compress(row) for _ in range(count)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + extra_chunks
                     + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))
    return path


def test_16_bit_grey_and_transparent_palette_pngs_decode_in_bounded_memory(tmp_path):
    """A 16-bit grey PNG went through float64 at full size (2.4 GB for 9,400 x 9,400) and a
    palette PNG with transparency through full-size RGBA (1.5 GB); at 6,000 x 6,000 they
    took ~1 GB and ~0.6 GB. Now each is converted and reduced a band of rows at a time,
    which fits in a 500 MB address space (Python and PIL themselves take ~110 MB)."""
    grey = write_png(tmp_path / "deep grey.png", 6000, 6000, 16, 0)
    palette = write_png(tmp_path / "palette.png", 6000, 6000, 8, 3,
                        png_chunk(b"PLTE", bytes([0, 0, 0, 0, 255, 0]))  # black, green
                        + png_chunk(b"tRNS", b"\0"))  # index 0 fully transparent
    assert grey.stat().st_size < 300_000 and palette.stat().st_size < 300_000
    code = ("import json, sys\n"
            "from pyimagesearch.imageio import load_image\n"
            "print(json.dumps([load_image(path, 32)[5, 5].tolist() for path in sys.argv[1:]]))\n")
    result = run_python(code, grey, palette, memory_mb=500, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout) == [[0, 0, 0], [255, 255, 255]]  # black; transparent: white


def test_decoded_bytes_are_bounded_as_well_as_pixels(tmp_path):
    """8,200 x 8,200 is under the pixel limit, but as RGBA it decodes to 256.5 MiB."""
    from pyimagesearch.imageio import MAX_DECODED_PIXELS, UnreadableImageError, load_image

    assert 8200 * 8200 < MAX_DECODED_PIXELS
    path = write_png(tmp_path / "wide rgba.png", 8200, 8200, 8, 6, rows=1)  # header decides
    with pytest.raises(UnreadableImageError) as caught:
        load_image(path, 32)
    assert str(caught.value) == (f"{path}: too large (8200x8200 RGBA pixels decode to 256.5 MiB, "
                                 "limit 256 MiB); downscale it first")


# --- item 6: the decoded cache checks content, not only size and time ------------

def test_a_file_replaced_with_its_time_put_back_is_decoded_again(tmp_path):
    """Swapping two same-size images and restoring their times (`touch -r`) kept the old
    rows: evaluation said 100% on the cache and 66.67% on a fresh one."""
    import numpy as np

    from conftest import BLUE, RED
    from pyimagesearch import dataset

    root = tmp_path / "my data"
    red, blue = make_image(root / "red" / "one.png", color=RED), \
        make_image(root / "blue" / "one.png", color=BLUE)
    big = make_noise_image(root / "blue" / "big.png", size=(240, 240))  # over 2 x KEY_BLOCK
    assert os.path.getsize(red) == os.path.getsize(blue)
    assert os.path.getsize(big) > 2 * dataset.KEY_BLOCK
    cache = tmp_path / "cache"
    first = dataset.load_image_folder(root, 8, cache, log=lambda _: None)
    row = {path: np.asarray(first.images[index]) for index, path in enumerate(first.paths)}
    assert row["red/one.png"][0, 0].tolist() == list(RED)

    def replace(path, content):
        times = os.stat(path)
        with open(path, "r+b") as handle:
            handle.write(content)
        os.utime(path, ns=(times.st_atime_ns, times.st_mtime_ns))  # touch -r

    from pathlib import Path

    red, blue, big = Path(red), Path(blue), Path(big)
    red_bytes, blue_bytes = red.read_bytes(), blue.read_bytes()
    replace(red, blue_bytes)
    replace(blue, red_bytes)
    data = bytearray(big.read_bytes())
    data[-100] ^= 0xFF  # the end of the compressed pixels (and so the checksum) differs
    replace(big, bytes(data))
    lines = []
    again = dataset.load_image_folder(root, 8, cache, log=lines.append)
    row = {path: np.asarray(again.images[index]) for index, path in enumerate(again.paths)}
    assert row["red/one.png"][0, 0].tolist() == list(BLUE)
    assert row["blue/one.png"][0, 0].tolist() == list(RED)
    assert "[INFO] Decoding 3 new or changed images..." in lines
    hashes = dict(zip(again.paths, again.hashes))
    assert hashes["red/one.png"] == dict(zip(first.paths, first.hashes))["blue/one.png"]
    lines.clear()
    dataset.load_image_folder(root, 8, cache, log=lines.append)
    assert not any("Decoding" in line for line in lines)  # unchanged: the cache is used
