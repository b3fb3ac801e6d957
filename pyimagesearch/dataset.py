"""Scanning a folder-per-class dataset into a cache of decoded, resized images.

    dataset/
      bulbasaur/ 00000001.jpg  x.png:large  ...
      pikachu/   ...

Class name = folder name, classes sorted; hidden folders (`.ipynb_checkpoints`)
are ignored. Every file, `.DS_Store` included, is tried as an image by
content; a file that does not decode is skipped with one warning line
naming it, and counted.

Decoding happens once, in parallel threads (PIL releases the GIL while it
decodes and resizes), into a uint8 array file on disk, keyed on each file's
relative path, size, mtime and the target size. The next run on an unchanged
dataset reads that file instead of decoding again; changed, added and removed
files are picked up. The cache is a plain .npy array plus a JSON index, never
a pickle, and training streams batches from it, so memory does not grow with
the dataset (the tutorial kept every image in RAM as float32).
"""

import hashlib
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from pyimagesearch.imageio import UnreadableImageError, load_image

CACHE_VERSION = 1


class DatasetError(ValueError):
    """A dataset the user must fix (missing folder, fewer than two classes...)."""


@dataclass
class ImageFolder:
    class_names: list
    paths: list  # relative to the dataset root, one per row of `images`
    labels: np.ndarray  # (N,) int class index
    images: np.ndarray  # (N, S, S, 3) uint8, memory-mapped from the cache
    skipped: list = field(default_factory=list)  # one "path: reason" per bad file


def available_cpus():
    """CPUs this process may use (respects taskset/cgroups affinity)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def list_class_files(root):
    """Return (class_names, [(relative_path, class_index), ...]), sorted."""
    if not os.path.isdir(root):
        raise DatasetError(f"dataset folder not found: {root}")
    class_names = sorted(
        entry.name
        for entry in os.scandir(root)
        if entry.is_dir() and not entry.name.startswith(".")
    )
    files = []
    for class_index, class_name in enumerate(class_names):
        class_dir = os.path.join(root, class_name)
        # followlinks=False: a symlink loop inside a class folder cannot hang us.
        for folder, subfolders, names in os.walk(class_dir, followlinks=False):
            subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
            for name in sorted(names):  # hidden files too: judged by content
                relative = os.path.relpath(os.path.join(folder, name), root)
                files.append((relative, class_index))
    return class_names, files


def load_image_folder(root, image_size, cache_dir, log=print):
    """Scan `root`, decode what the cache lacks, and return an ImageFolder."""
    class_names, files = list_class_files(root)
    if not class_names:
        raise DatasetError(f"no class folders in {root} (expected {root}/<class>/<images>)")
    if not files:
        raise DatasetError(f"no files in the class folders of {root}")

    cache_path = _cache_path(cache_dir, root, image_size)
    old_index, old_images = _read_cache(cache_path, image_size)
    keys = [_file_key(root, relative) for relative, _ in files]
    decoded = _decode_missing(root, files, keys, old_index, image_size, log)

    rows, paths, labels, skipped = [], [], [], []
    for (relative, class_index), key in zip(files, keys):
        result = decoded.get(relative) or old_index.get(relative)
        if key is None:
            skipped.append(f"{relative}: disappeared or unreadable while scanning")
        elif "error" in result:
            skipped.append(result["error"])
        else:
            rows.append(result)
            paths.append(relative)
            labels.append(class_index)
    for message in skipped:
        log(f"[WARNING] skipped {message}")

    images = _write_cache(cache_path, root, files, keys, rows, decoded, old_index,
                          old_images, image_size)
    return ImageFolder(class_names, paths, np.asarray(labels, dtype=np.int64), images, skipped)


def _cache_path(cache_dir, root, image_size):
    digest = hashlib.sha1(os.path.abspath(root).encode()).hexdigest()[:16]
    name = f"{os.path.basename(os.path.abspath(root)) or 'root'}-{digest}-{image_size}px"
    return os.path.join(cache_dir, name)


def _file_key(root, relative):
    try:
        stat = os.stat(os.path.join(root, relative))
    except OSError:  # vanished, dangling symlink, symlink loop
        return None
    return [stat.st_size, stat.st_mtime_ns]


def _read_cache(cache_path, image_size):
    """Old index {relative: entry} and its memory-mapped images, or empty."""
    try:
        with open(cache_path + ".json") as handle:
            index = json.load(handle)
        if index.get("version") != CACHE_VERSION or index.get("image_size") != image_size:
            return {}, None
        images = np.load(cache_path + ".npy", mmap_mode="r", allow_pickle=False)
        if images.shape[1:] != (image_size, image_size, 3):
            return {}, None
        # An index from another run (killed mid-write, or two runs at once) must
        # not map paths onto the wrong rows: every row exactly once, or rebuild.
        rows = sorted(entry["row"] for entry in index["files"].values() if "row" in entry)
        if rows != list(range(len(images))):
            return {}, None
        return index["files"], images
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}, None


def _decode_missing(root, files, keys, old_index, image_size, log):
    """Decode, in parallel, every file whose (size, mtime) is not in the cache."""
    todo = [
        relative
        for (relative, _), key in zip(files, keys)
        if key is not None and old_index.get(relative, {}).get("key") != key
    ]
    results = {}
    if not todo:
        return results

    def decode(relative):
        try:
            return {"pixels": load_image(os.path.join(root, relative), image_size)}
        except UnreadableImageError as error:
            # Stored relative so the cache survives moving the dataset folder.
            return {"error": str(error).replace(os.path.join(root, ""), "", 1)}

    progress = _Progress(len(todo), f"Decoding {len(todo)} new or changed images", log)
    with ThreadPoolExecutor(max_workers=available_cpus()) as pool:
        for relative, result in zip(todo, pool.map(decode, todo)):
            results[relative] = result
            progress.step()
    return results


def _write_cache(cache_path, root, files, keys, rows, decoded, old_index, old_images,
                 image_size):
    """Write the images of `rows` to a fresh cache (atomically) and map it."""
    unchanged = not decoded and old_images is not None and len(old_index) == len(files)
    if unchanged and [r["row"] for r in rows] == list(range(len(rows))):
        return old_images[: len(rows)] if len(rows) < len(old_images) else old_images

    os.makedirs(os.path.dirname(cache_path) or ".", exist_ok=True)
    temporary = f"{cache_path}.tmp-{os.getpid()}.npy"
    images = np.lib.format.open_memmap(
        temporary, mode="w+", dtype=np.uint8, shape=(len(rows), image_size, image_size, 3)
    )
    new_index = {}
    row = 0
    for (relative, _), key in zip(files, keys):
        result = decoded.get(relative) or old_index.get(relative)
        if key is None or result is None:
            continue
        if "error" in result:
            new_index[relative] = {"key": key, "error": result["error"]}
            continue
        images[row] = result["pixels"] if "pixels" in result else old_images[result["row"]]
        new_index[relative] = {"key": key, "row": row}
        row += 1
    images.flush()
    del images
    # Drop the old index first: a run killed before the new one is written then
    # leaves no index (a full rebuild), never an old index over the new array.
    try:
        os.remove(cache_path + ".json")
    except FileNotFoundError:
        pass
    os.replace(temporary, cache_path + ".npy")
    with open(cache_path + ".json.tmp", "w") as handle:
        json.dump({"version": CACHE_VERSION, "image_size": image_size,
                   "root": os.path.abspath(root), "files": new_index}, handle)
    os.replace(cache_path + ".json.tmp", cache_path + ".json")
    return np.load(cache_path + ".npy", mmap_mode="r", allow_pickle=False)


class _Progress:
    """A counter on one line for a terminal, a few lines for a log file."""

    def __init__(self, total, title, log):
        self.total, self.done, self.log = total, 0, log
        self.interactive = sys.stderr.isatty()
        self.next_report = max(1, total // 10)
        log(f"[INFO] {title}...")

    def step(self):
        self.done += 1
        if self.interactive:
            end = "\n" if self.done == self.total else ""
            print(f"\r  {self.done}/{self.total}", end=end, file=sys.stderr, flush=True)
        elif self.done >= self.next_report or self.done == self.total:
            self.log(f"  {self.done}/{self.total}")
            self.next_report += max(1, self.total // 10)
