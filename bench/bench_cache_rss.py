"""How reading batches from the decoded-image cache shows up in RSS: memmap vs pread.

    .venv/bin/python bench/bench_cache_rss.py CACHE.npy [--batch-size 32]

pyimagesearch/pipeline.py gathers each batch by fancy-indexing a np.memmap of
the cache. Pages read through a mapping are file-backed pages *of this
process*, so they count in its RSS (RssFile) and stay until the kernel needs
the memory: one epoch over a 20,000-image cache at 96 px maps all 553 MB.
Reading the same rows with os.preadv into a batch buffer goes through the
page cache, which is not charged to the process. Each method runs in its own
child process over one shuffled epoch; no TensorFlow is involved.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np


def status():
    values = {}
    with open("/proc/self/status") as handle:
        for line in handle:
            key, _, rest = line.partition(":")
            if key in ("VmHWM", "RssAnon", "RssFile"):
                values[key] = round(int(rest.split()[0]) / 1024, 1)
    return values


def epoch(path, method, batch_size):
    images = np.load(path, mmap_mode="r")
    count, shape = len(images), images.shape[1:]
    row_bytes = int(np.prod(shape))
    order = np.random.default_rng(0).permutation(count)
    before = status()
    started = time.perf_counter()
    if method == "memmap":  # what pipeline.make_dataset's gather does today
        for start in range(0, count, batch_size):
            rows = np.sort(order[start:start + batch_size])
            batch = np.empty((len(rows),) + shape, dtype=np.uint8)
            batch[:] = images[rows]
    else:  # preadv straight into the batch buffer
        offset = images.offset
        del images
        with open(path, "rb") as handle:
            descriptor = handle.fileno()
            for start in range(0, count, batch_size):
                rows = np.sort(order[start:start + batch_size])
                batch = np.empty((len(rows),) + shape, dtype=np.uint8)
                flat = batch.reshape(len(rows), row_bytes)
                for i, row in enumerate(rows):
                    os.preadv(descriptor, [flat[i]], offset + int(row) * row_bytes)
    seconds = time.perf_counter() - started
    print(json.dumps({"method": method, "rows": count, "rows_per_second": round(count / seconds),
                      "before": before, "after": status()}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("cache", help="a .npy cache written by pyimagesearch.dataset")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--child", choices=("memmap", "pread"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return epoch(args.cache, args.child, args.batch_size)
    for method in ("memmap", "pread"):
        subprocess.run([sys.executable, __file__, args.cache, "--batch-size",
                        str(args.batch_size), "--child", method], check=True)


if __name__ == "__main__":
    main()
