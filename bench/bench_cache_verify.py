"""What checking file content costs when the decoded-image cache is reused (review 23, item 6).

    .venv/bin/python bench/bench_cache_verify.py [--count 600] [--repeat 3]

The cache used to trust a file's size and mtime, so a file replaced with its
time put back kept its old decoded row. It now also keys each file on a
digest of its first and last KEY_BLOCK bytes (dataset._file_key). This
compares, on a generated dataset (half 160 px noise PNGs of ~77 KB; half
1024 x 768 JPEGs of a few hundred KB), the time to check every file by

  stat           size and mtime only (the old key)
  head+tail      size, mtime and the digest of the first and last 16 KiB (the new key)
  head+tail 64K  the same with 64 KiB blocks
  sha256         the full sha256 of every file (the other option considered)

each with the files in the page cache (warm) and evicted from it with
posix_fadvise(DONTNEED) (cold: what a run after a reboot or on a big dataset
sees), against a full reuse of the cache (load_image_folder on an unchanged
folder, which includes the head+tail check) and the cold build that decodes
everything. Best of --repeat runs; the machine is shared, so read the ratios.
"""

import argparse
import hashlib
import os
import sys
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pyimagesearch import dataset  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def build(root, count):
    """count/2 noise PNGs (160 px) and count/2 smooth-noise JPEGs (1024 x 768) in 2 classes."""
    rng = np.random.default_rng(0)
    for index in range(count):
        folder = os.path.join(root, ("a", "b")[index % 2])
        os.makedirs(folder, exist_ok=True)
        if index < count // 2:
            path = os.path.join(folder, f"{index:05d}.png")
            if not os.path.exists(path):
                Image.fromarray(rng.integers(0, 256, (160, 160, 3), dtype=np.uint8)).save(path)
        else:
            path = os.path.join(folder, f"{index:05d}.jpg")
            if not os.path.exists(path):
                small = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
                Image.fromarray(small).resize((1024, 768), Image.BICUBIC).save(path, quality=92)


def paths_of(root):
    _, files = dataset.list_class_files(root)
    return [os.path.join(root, relative) for relative, _ in files]


def evict(paths):
    for path in paths:
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(descriptor)


def stat_keys(root, files):
    return [[info.st_size, info.st_mtime_ns] for info in
            (os.stat(os.path.join(root, relative)) for relative, _ in files)]


def sha256_keys(root, files):
    from concurrent.futures import ThreadPoolExecutor

    def one(relative):
        with open(os.path.join(root, relative), "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()

    with ThreadPoolExecutor(max_workers=dataset.available_cpus()) as pool:
        return list(pool.map(one, [relative for relative, _ in files]))


def with_block(size, function):
    """Run `function` with dataset.KEY_BLOCK set to `size`."""
    saved, dataset.KEY_BLOCK = dataset.KEY_BLOCK, size
    try:
        return function()
    finally:
        dataset.KEY_BLOCK = saved


def best(function, repeat, before=None):
    times = []
    for _ in range(repeat):
        if before:
            before()
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=600)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    root = os.path.join(HERE, "data", f"verify-{args.count}")
    cache = os.path.join(HERE, "data", f"verify-{args.count}.cache")
    build(root, args.count)
    _, files = dataset.list_class_files(root)
    paths = paths_of(root)
    total_mb = sum(os.path.getsize(path) for path in paths) / 2**20
    quiet = lambda _: None  # noqa: E731

    def cold_build():
        import shutil

        shutil.rmtree(cache, ignore_errors=True)
        evict(paths)

    build_s = best(lambda: dataset.load_image_folder(root, 96, cache, log=quiet), 1, cold_build)
    checks = {
        "stat": lambda: stat_keys(root, files),
        "head+tail": lambda: dataset._file_keys(root, files),
        "head+tail 64K": lambda: with_block(64 * 1024, lambda: dataset._file_keys(root, files)),
        "sha256": lambda: sha256_keys(root, files),
        "cache reuse (load_image_folder)": lambda: dataset.load_image_folder(root, 96, cache,
                                                                              log=quiet),
    }
    print(f"{len(paths)} files, {total_mb:.0f} MB; cold build (decode all): {build_s:.2f} s; "
          f"{dataset.available_cpus()} CPU(s)")
    print(f"{'check':34} {'warm s':>8} {'cold s':>8} {'cold / build':>13}")
    results = {}
    for name, function in checks.items():
        function()  # warm the page cache
        warm = best(function, args.repeat)
        cold = best(function, args.repeat, lambda: evict(paths))
        results[name] = (warm, cold)
        print(f"{name:34} {warm:8.3f} {cold:8.3f} {cold / build_s:12.1%}")
    (stat_warm, stat_cold), (quick_warm, quick_cold), (full_warm, full_cold) = (
        results["stat"], results["head+tail"], results["sha256"])
    print(f"head+tail vs stat: warm {quick_warm / stat_warm:.1f}x, "
          f"cold {quick_cold / stat_cold:.1f}x"
          f"; sha256 vs head+tail: warm {full_warm / quick_warm:.1f}x, "
          f"cold {full_cold / quick_cold:.1f}x")

if __name__ == "__main__":
    main()
