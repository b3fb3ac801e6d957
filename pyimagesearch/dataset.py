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
relative path, size, mtime, a digest of its first and last 16 KiB (so a file
replaced with its time put back is decoded again) and the target size. The
next run on an unchanged dataset reads that file instead of decoding again;
changed, added and removed files are picked up. The cache is a plain .npy array plus a JSON index, never
a pickle, and training streams batches from it, so memory does not grow with
the dataset (the tutorial kept every image in RAM as float32).

The index also keeps each file's sha256 and a 64-bit perceptual hash
(`imagehash.phash` of the decoded image), computed during the same decode,
so the split (pyimagesearch.splitting) can keep duplicates together without
reading the files again. One process at a time rebuilds a cache (a lock file
beside it); a second is told which process holds it. A rebuild interrupted at
any point (Ctrl-C included) leaves no temporary file behind.
"""

import collections
import contextlib
import hashlib
import io
import json
import os
import stat
import sys
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import imagehash
import numpy as np
from PIL import Image

from pyimagesearch import locking
from pyimagesearch.memory import release_freed_memory
from pyimagesearch.cli import available_cpus, unwritable_reason
from pyimagesearch.imageio import UnreadableImageError, load_image

# 2: sha256 and phash per file, and the .npy's identity in the index; 3: large non-JPEG
# images are reduced before conversion (imageio), so their pixels differ slightly from 2's;
# 4: large images with alpha, transparency, a palette or 16 bits are converted to RGB
# before they are reduced, band by band (imageio);
# a file's key holds a digest of its first and last KEY_BLOCK bytes (_file_key)
CACHE_VERSION = 4
KEY_BLOCK = 16 * 1024


class DatasetError(ValueError):
    """A dataset the user must fix (missing folder, fewer than two classes...)."""


@dataclass
class ImageFolder:
    class_names: list
    paths: list  # relative to the dataset root, one per row of `images`
    labels: np.ndarray  # (N,) int class index
    images: np.ndarray  # (N, S, S, 3) uint8, memory-mapped from the cache
    skipped: list = field(default_factory=list)  # one "path: reason" per bad file
    hashes: list = field(default_factory=list)  # (N,) sha256 hex of each file's bytes
    phashes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))  # (N,)
    root: str = ""  # the dataset folder `paths` are relative to


class ListingTooLongError(DatasetError):
    """list_class_files gave up: more files, or more time, than its caller allowed."""


def list_class_files(root, max_files=None, max_seconds=None):
    """Return (class_names, [(relative_path, class_index), ...]), sorted.

    max_files / max_seconds: raise ListingTooLongError past either (a check
    that only wants a quick look must not walk a huge folder on every call).
    """
    deadline = time.monotonic() + max_seconds if max_seconds is not None else None
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
            if max_files is not None and len(files) > max_files:
                raise ListingTooLongError(f"over {max_files:,} files")
            if deadline is not None and time.monotonic() > deadline:
                raise ListingTooLongError(f"listing took over {max_seconds:g} s")
    return class_names, files


def load_image_folder(root, image_size, cache_dir, log=print):
    """Scan `root`, decode what the cache lacks, and return an ImageFolder."""
    class_names, files = list_class_files(root)
    if not class_names:
        raise DatasetError(f"no class folders in {root} (expected {root}/<class>/<images>)")
    if not files:
        raise DatasetError(f"no files in the class folders of {root}")

    cache_path = cache_path_for(cache_dir, root, image_size)
    keys = _file_keys(root, files)
    entries, images = _fresh_entries(files, keys, *_read_cache(cache_path, image_size))
    if images is None:
        check_cache_writable(cache_path)
        try:
            with locking.exclusive(cache_path + ".lock", f"the image cache {cache_path}"):
                # Read again under the lock: a run that held it may have just written it.
                old_index, old_images = _read_cache(cache_path, image_size)
                entries, images = _fresh_entries(files, keys, old_index, old_images)
                if images is None:
                    entries, images = _rebuild_cache(cache_path, root, files, keys, old_index,
                                                     old_images, image_size, log)
        except locking.LockedError as error:
            raise DatasetError(str(error)) from None

    paths, labels, hashes, phashes, skipped = [], [], [], [], []
    for (relative, class_index), entry in zip(files, entries):
        if entry is None:
            skipped.append(f"{relative}: disappeared or unreadable while scanning")
        elif "error" in entry:
            skipped.append(entry["error"])
        else:  # rows are written in file order, so row i belongs to paths[i]
            paths.append(relative)
            labels.append(class_index)
            hashes.append(entry["sha256"])
            phashes.append(int(entry["phash"], 16))
    for message in skipped:
        log(f"[WARNING] skipped {message}")
    return ImageFolder(class_names, paths, np.asarray(labels, dtype=np.int64), images, skipped,
                       hashes, np.asarray(phashes, dtype=np.uint64), root)


def check_cache_writable(cache_path):
    """DatasetError naming --cache-dir when the cache cannot be written at `cache_path`.

    A cache folder that is a file or read-only would otherwise end in a
    traceback, or in a bare "afile: File exists" from os.makedirs.
    """
    reason = unwritable_reason(cache_path + ".lock")
    if reason:
        raise DatasetError(f"decoded-image cache: {reason}; pass --cache-dir a writable folder "
                           "(or set POKEDEX_CACHE_DIR)")


def _fresh_entries(files, keys, old_index, old_images):
    """(entries, images) when the cache holds every file unchanged, else (None, None)."""
    if old_images is None or len(old_index) != len(files):
        return None, None
    entries = []
    for (relative, _), key in zip(files, keys):
        entry = old_index.get(relative)
        if key is None or entry is None or entry.get("key") != key:
            return None, None
        entries.append(entry)
    return entries, old_images


def stratified_split(labels, fraction, seed, warn=print, class_names=None):
    """Split row indices per class so each class keeps its share in both parts.

    Returns (train_indices, holdout_indices). A class too small to give both
    parts at least one image goes entirely to training, with a warning.
    """
    rng = np.random.default_rng(seed)
    train, holdout = [], []
    for class_index in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == class_index))
        count = min(len(rows) - 1, max(1, round(len(rows) * fraction)))
        if count < 1:
            name = class_names[class_index] if class_names else f"index {class_index}"
            warn(f"[WARNING] class {name} has only {len(rows)} image(s): "
                 "all used for training, none held out")
            count = 0
        holdout.extend(rows[:count])
        train.extend(rows[count:])
    return np.sort(np.asarray(train, dtype=np.int64)), np.sort(np.asarray(holdout, dtype=np.int64))


def row_reader(images):
    """Return read(indices) -> (B, S, S, 3) uint8 copies of rows of `images`.

    For a memory-mapped cache, rows are read with pread: pages touched
    through a memmap count towards the process's resident memory (RSS), so
    over an epoch it would grow to the size of the whole cache; pages read
    with pread stay in the OS page cache, which is not charged to us. The
    reader's file descriptor closes with `read.close()` or when it is
    garbage-collected.
    """
    if not (isinstance(images, np.memmap) and images.filename):
        return lambda indices: np.asarray(images[np.asarray(indices)])
    return _RowReader(images)


class _RowReader:
    def __init__(self, images):
        self.filename, self.image_shape = images.filename, images.shape[1:]
        self.row_bytes, self.offset = int(np.prod(self.image_shape)), images.offset
        descriptor = os.open(images.filename, os.O_RDONLY)
        # A raw descriptor closed by a finalizer: no ResourceWarning, whoever drops the reader.
        self.close = weakref.finalize(self, os.close, descriptor)
        self.descriptor = descriptor

    def __call__(self, indices):
        batch = np.empty((len(indices),) + self.image_shape, dtype=np.uint8)
        for slot in np.argsort(indices):  # ascending offsets: sequential disk reads
            target = memoryview(batch[slot].reshape(-1))
            position = self.offset + int(indices[slot]) * self.row_bytes
            if os.preadv(self.descriptor, [target], position) != self.row_bytes:
                raise OSError(f"{self.filename}: cache file is shorter than expected")
        return batch


def cache_path_for(cache_dir, root, image_size):
    """Where the decoded cache of `root` at `image_size` lives (add .npy, .json, .lock)."""
    digest = hashlib.sha1(os.path.abspath(root).encode()).hexdigest()[:16]
    name = f"{os.path.basename(os.path.abspath(root)) or 'root'}-{digest}-{image_size}px"
    return os.path.join(cache_dir, name)


def _file_keys(root, files):
    """_file_key of every file, read in parallel threads (cold disks answer several reads
    at once, and hashing releases the GIL)."""
    with ThreadPoolExecutor(max_workers=available_cpus()) as pool:
        return list(pool.map(lambda item: _file_key(root, item[0]), files))


def _file_key(root, relative):
    """[size, mtime_ns, digest of the first and last KEY_BLOCK bytes], or None if unreadable.

    Size and time alone let a file replaced by other content, its time put back
    (`touch -r`, `cp -p`, `rsync -t`), keep its old decoded row. The blocks are the
    whole of a small image and, for larger ones, the header (size, tables, EXIF) and
    the end of the compressed data (PNG's ends with a checksum of all the pixels).
    Hashing dominates the cost of a reused cache, so the blocks are small:
    bench/bench_cache_verify.py compares them with 64 KiB and a full sha256.
    """
    path = os.path.join(root, relative)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer (the decoder skips it).
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except PermissionError:  # kept, so that the decoder says "Permission denied" for it
        return _stat_key(path)
    except OSError:  # vanished, dangling symlink, symlink loop
        return None
    try:
        info = os.fstat(descriptor)
        digest = hashlib.sha256()  # faster than blake2b where the CPU has SHA instructions
        if stat.S_ISREG(info.st_mode):
            digest.update(os.pread(descriptor, KEY_BLOCK, 0))
            if info.st_size > KEY_BLOCK:
                digest.update(os.pread(descriptor, KEY_BLOCK,
                                       max(KEY_BLOCK, info.st_size - KEY_BLOCK)))
    except OSError:
        return None
    finally:
        os.close(descriptor)
    return [info.st_size, info.st_mtime_ns, digest.hexdigest()[:32]]


def _stat_key(path):
    try:
        info = os.stat(path)
    except OSError:
        return None
    return [info.st_size, info.st_mtime_ns, None]


def _read_cache(cache_path, image_size):
    """Old index {relative: entry} and its memory-mapped images, or empty."""
    try:
        with open(cache_path + ".json") as handle:
            index = json.load(handle)
        if index.get("version") != CACHE_VERSION or index.get("image_size") != image_size:
            return {}, None
        # The index names the .npy it was written for (inode, size, mtime): an
        # index left by a run killed mid-rebuild, or read while another process
        # replaces the array, never maps paths onto another array's rows.
        before = _file_identity(cache_path + ".npy")
        images = np.load(cache_path + ".npy", mmap_mode="r", allow_pickle=False)
        if before != index["npy"] or _file_identity(cache_path + ".npy") != before:
            return {}, None
        if images.shape[1:] != (image_size, image_size, 3):
            return {}, None
        rows = sorted(entry["row"] for entry in index["files"].values() if "row" in entry)
        if rows != list(range(len(images))):
            return {}, None
        for entry in index["files"].values():  # every row's hashes readable, or rebuild
            if "row" in entry and (len(entry["sha256"]) != 64 or int(entry["phash"], 16) >> 64):
                return {}, None
        return index["files"], images
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}, None


def _file_identity(path):
    stat = os.stat(path)
    return [stat.st_ino, stat.st_size, stat.st_mtime_ns]


def _decode(root, relative, image_size):
    """{"pixels", "sha256", "phash"} of one file, or {"error": "relative: reason"}."""
    path = os.path.join(root, relative)
    try:
        pixels = load_image(path, image_size)
        # A second read of the file, served by the OS page cache: load_image
        # keeps taking a path, so that its errors name the file.
        with open(path, "rb") as handle:
            sha256 = hashlib.file_digest(handle, "sha256").hexdigest()
    except UnreadableImageError as error:
        # Stored relative so the cache survives moving the dataset folder.
        return {"error": str(error).replace(os.path.join(root, ""), "", 1)}
    except OSError as error:  # unreadable bytes (permissions, a directory, I/O error)
        return {"error": f"{relative}: {error.strerror or type(error).__name__}"}
    # phash of the pixels the model sees: grayscale 32x32 DCT, 64 bits as 16 hex digits.
    phash = str(imagehash.phash(Image.fromarray(pixels)))
    return {"pixels": pixels, "sha256": sha256, "phash": phash}


def _rebuild_cache(cache_path, root, files, keys, old_index, old_images, image_size, log):
    """Write a new cache: reused rows copied, new files decoded in parallel.

    Rows stream to disk in file order as they are decoded, so memory stays
    flat however large the dataset. Returns (entries per file, images).
    """
    fresh = [key is not None and old_index.get(relative, {}).get("key") == key
             for (relative, _), key in zip(files, keys)]
    todo = [relative for (relative, _), key, ok in zip(files, keys, fresh)
            if key is not None and not ok]
    os.makedirs(os.path.dirname(cache_path) or ".", exist_ok=True)
    temporary = f"{cache_path}.tmp-{os.getpid()}.npy"
    header = _npy_header(len(files), image_size)  # rewritten with the real count below
    progress = _Progress(len(todo), f"Decoding {len(todo)} new or changed images", log)
    entries, count = [], 0
    try:
        with contextlib.ExitStack() as stack:
            pool = ThreadPoolExecutor(max_workers=available_cpus())
            # On any exit, queued decodes are dropped rather than waited for.
            stack.callback(pool.shutdown, wait=True, cancel_futures=True)
            read_old = row_reader(old_images) if old_images is not None else None
            if isinstance(read_old, _RowReader):
                stack.callback(read_old.close)
            out = stack.enter_context(open(temporary, "wb"))
            out.write(header)
            decoded = _ordered_map(pool, lambda relative: _decode(root, relative, image_size),
                                   todo, ahead=4 * available_cpus())
            for (relative, _), key, ok in zip(files, keys, fresh):
                if key is None:
                    entries.append(None)
                    continue
                if ok:
                    entry = dict(old_index[relative])
                    pixels = read_old([entry.pop("row")])[0] if "row" in entry else None
                else:
                    entry = next(decoded)
                    progress.step()
                    pixels = entry.pop("pixels", None)
                entry["key"] = key
                if pixels is not None:
                    out.write(np.ascontiguousarray(pixels, dtype=np.uint8).tobytes())
                    entry["row"] = count
                    count += 1
                entries.append(entry)
            final_header = _npy_header(count, image_size)
            if len(final_header) != len(header):  # numpy pads headers so this should not happen
                raise OSError(f"{temporary}: unexpected .npy header size")
            out.seek(0)
            out.write(final_header)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, cache_path + ".npy")
        index = {relative: entry for (relative, _), entry in zip(files, entries) if entry}
        with open(cache_path + ".json.tmp", "w") as handle:
            json.dump({"version": CACHE_VERSION, "image_size": image_size,
                       "root": os.path.abspath(root), "npy": _file_identity(cache_path + ".npy"),
                       "files": index}, handle)
        os.replace(cache_path + ".json.tmp", cache_path + ".json")
        release_freed_memory()  # the decoding threads' leftovers, before TensorFlow comes
    except BaseException:  # Ctrl-C included: leave no temporary behind
        for leftover in (temporary, cache_path + ".json.tmp"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(leftover)
        raise
    return entries, np.load(cache_path + ".npy", mmap_mode="r", allow_pickle=False)


def _ordered_map(pool, function, items, ahead):
    """pool.map, but at most `ahead` results wait in memory: a slow file cannot make
    the decoded images of all later files pile up."""
    pending = collections.deque()
    for item in items:
        pending.append(pool.submit(function, item))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _npy_header(rows, image_size):
    """The .npy header of a (rows, S, S, 3) uint8 array (numpy pads it to a fixed size)."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {
        "descr": "|u1", "fortran_order": False, "shape": (rows, image_size, image_size, 3)})
    return buffer.getvalue()


def default_cache_dir(model_path=None):
    """Decoded-image cache: $POKEDEX_CACHE_DIR, else `<model>.cache/` beside the model.

    Beside the model, so nothing is written outside the paths the user named;
    without a model path (evaluate.py on its own), the user's cache folder.
    """
    if os.environ.get("POKEDEX_CACHE_DIR"):
        return os.environ["POKEDEX_CACHE_DIR"]
    if model_path:
        return f"{model_path}.cache"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "pokedex")


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
