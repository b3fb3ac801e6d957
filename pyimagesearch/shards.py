"""TFRecord shards of a folder dataset, for workers that do not have the folder.

    shards/
      shards.json                         the index: the commit point of a prepare
      features.csv                        what each example holds
      shard-00000-3f1c9a0b2d4e.tfrecord   shard number, then its content digest
      ...

Each example is one image exactly as training sees it: decoded, screened and
resized by pyimagesearch.dataset (so it equals the decoded cache's row for the
same file), stored as PNG. PNG because it is lossless: a model reading shards
sees the very pixels it would see from the cache and that classify.py feeds it;
JPEG would add a second lossy pass on top of the source's own, different from
the cache's pixels (train/serve skew), for files about a third the size.

Shard files are immutable and named after their content, so a prepare never
overwrites a file the previous index names: new shards are written (temporary
file + rename), then shards.json is replaced atomically, then files no index
names are deleted. An interrupted prepare leaves the previous set readable.

Assignment of images to shards. A fresh prepare orders the images by content
hash (then path) and cuts fixed runs of `per_shard`: the order is stable and
every shard mixes the classes, so interleaving a few files gives mixed batches
(runs sorted by class would give one-class shards). Cutting the current folder
into runs again on every prepare would let one insertion shift every later
shard, so an update keeps the previous index's assignment instead: a changed
file is rewritten in place in its shard, a removed one is dropped from its
shard, new files fill the last shard then new ones. Only shards whose members
changed are rewritten. The cost: after many updates shards drift below
`per_shard`; `rebuild=True` cuts them afresh. A different image size, class
list or decoder version rewrites everything (labels and pixels changed).
"""

import contextlib
import hashlib
import io
import json
import os
import re
from dataclasses import dataclass, field

import numpy as np

from pyimagesearch import dataset as dataset_lib
from pyimagesearch import locking
from pyimagesearch.persistence import write_bytes_atomic, write_json_atomic

FORMAT = "pokedex-shards"
VERSION = 1
INDEX_NAME = "shards.json"
FEATURES_CSV = """name,type,shape,meaning
image,bytes (PNG),"(S, S, 3) uint8 once decoded",the image resized to image_size (shards.json) as the decoded cache holds it
label,int64,(),index into class_names (shards.json)
class_name,bytes (UTF-8),(),the class folder name
path,bytes (UTF-8),(),source path relative to the dataset folder
sha256,bytes (ASCII hex),(),sha256 of the source file's bytes (the split's key)
phash,bytes (ASCII hex),(),64-bit perceptual hash of the resized image (16 hex digits)
"""
_SHARD_NAME = re.compile(r"shard-(\d{5})-[0-9a-f]{12}\.tfrecord")


class ShardError(dataset_lib.DatasetError):
    """A missing, damaged or unusable shards folder (the message names the file)."""


@dataclass
class Shard:
    file: str
    id: int  # stable across updates (the name's number); never reused
    first: int  # global example range [first, first + count), in index order
    count: int
    sha256: str  # of the shard file
    bytes: int
    hashes: list  # sorted sha256 of the source files it holds
    examples: list  # [[path, label, sha256, phash], ...] in record order


@dataclass
class Index:
    folder: str
    class_names: list
    image_size: int
    per_shard: int
    shards: list
    cache_version: int = dataset_lib.CACHE_VERSION

    @property
    def count(self):
        return sum(shard.count for shard in self.shards)

    def worker_shards(self, num_workers=1, worker_index=0):
        """The shards worker `worker_index` of `num_workers` reads: every num_workers-th."""
        if not 0 <= worker_index < num_workers:
            raise ShardError(f"worker_index must be 0 to {num_workers - 1} (got {worker_index})")
        if num_workers > len(self.shards):
            raise ShardError(f"{self.folder}: {len(self.shards)} shard(s) for {num_workers} "
                             "workers; prepare again with a smaller --per-shard")
        return self.shards[worker_index::num_workers]


@dataclass
class Summary:
    written: list = field(default_factory=list)  # shard file names written by this prepare
    kept: list = field(default_factory=list)  # unchanged, left untouched
    removed: list = field(default_factory=list)  # no longer named by the index, deleted
    count: int = 0
    skipped: list = field(default_factory=list)  # "path: reason" of unreadable files


def read_index(path):
    """The Index of a shards folder (or of its shards.json); ShardError when unusable."""
    index_path = os.path.join(path, INDEX_NAME) if os.path.isdir(path) else path
    folder = os.path.dirname(os.path.abspath(index_path))
    try:
        with open(index_path, encoding="utf-8") as handle:
            raw = json.load(handle)
        if raw.get("format") != FORMAT or raw.get("version") != VERSION:
            raise ShardError(f"{index_path}: not a version {VERSION} {FORMAT} index")
        shards = [Shard(**entry) for entry in raw["shards"]]
        index = Index(folder, list(raw["class_names"]), int(raw["image_size"]),
                      int(raw["per_shard"]), shards, int(raw["cache_version"]))
        if not all(isinstance(name, str) for name in index.class_names):
            raise ShardError(f"{index_path}: damaged shards index (class_names)")
        first = 0
        for shard in shards:
            problem = _damage(shard, first, len(index.class_names))
            if problem:
                raise ShardError(f"{index_path}: damaged entry for {shard.file!r} ({problem}); "
                                 "run prepare.py again")
            first += shard.count
    except FileNotFoundError:
        raise ShardError(f"{index_path}: no shards index (run prepare.py first)") from None
    except OSError as error:
        raise ShardError(f"{index_path}: {error.strerror or error}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        if isinstance(error, ShardError):
            raise
        raise ShardError(f"{index_path}: damaged shards index ({type(error).__name__})") from None
    return index


_HEX64, _HEX16 = re.compile(r"[0-9a-f]{64}"), re.compile(r"[0-9a-f]{16}")


def _damage(shard, first, num_classes):
    """What is wrong with one shards.json entry (a short phrase), or None.

    Everything a reader later indexes or parses is checked here, so a damaged
    index is one line naming it rather than a KeyError deep in training.
    """
    if not (isinstance(shard.file, str) and _SHARD_NAME.fullmatch(shard.file)):
        return "file name"
    if not isinstance(shard.examples, list) or shard.count != len(shard.examples):
        return "count"
    if shard.first != first:
        return f"first {shard.first!r}, expected {first}"
    if not (isinstance(shard.sha256, str) and _HEX64.fullmatch(shard.sha256)):
        return "sha256"
    for example in shard.examples:
        if not (isinstance(example, list) and len(example) == 4):
            return f"example {example!r}"
        path, label, sha, phash = example
        if not isinstance(path, str):
            return f"path {path!r}"
        if type(label) is not int or not 0 <= label < num_classes:
            return f"label {label!r} of {path}, expected 0 to {num_classes - 1}"
        if not (isinstance(sha, str) and _HEX64.fullmatch(sha)):
            return f"sha256 {sha!r} of {path}"
        if not (isinstance(phash, str) and _HEX16.fullmatch(phash)):
            return f"phash {phash!r} of {path}"
    return None


def verify(index, shards=None):
    """Check each shard file exists and has the size and sha256 the index records."""
    for shard in index.shards if shards is None else shards:
        path = os.path.join(index.folder, shard.file)
        try:
            with open(path, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                digest = hashlib.file_digest(handle, "sha256").hexdigest() \
                    if size == shard.bytes else None
        except OSError as error:
            raise ShardError(f"{path}: {error.strerror or error} (run prepare.py again)") from None
        if digest != shard.sha256:
            raise ShardError(f"{path}: damaged shard (size or sha256 differs from "
                             f"{INDEX_NAME}); run prepare.py again")


def prepare(dataset_root, output, *, image_size=96, per_shard=1024, cache_dir=None,
            rebuild=False, log=print):
    """Write (or update) the shards of `dataset_root` in `output`; return a Summary."""
    if per_shard < 1:
        raise ShardError(f"per_shard must be positive (got {per_shard})")
    if os.path.exists(output) and not os.path.isdir(output):
        raise ShardError(f"{output}: is a file, not a folder for shards")
    cache_dir = cache_dir or dataset_lib.default_cache_dir(output)
    folder = dataset_lib.load_image_folder(dataset_root, image_size, cache_dir, log=log)
    os.makedirs(output, exist_ok=True)
    try:
        with locking.exclusive(os.path.join(output, ".prepare.lock"), f"the shards in {output}"):
            return _prepare_locked(folder, output, image_size, per_shard, rebuild, log)
    except locking.LockedError as error:
        raise ShardError(str(error)) from None


def _prepare_locked(folder, output, image_size, per_shard, rebuild, log):
    example_of = {path: [path, int(label), sha, f"{phash:016x}"] for path, label, sha, phash
                  in zip(folder.paths, folder.labels, folder.hashes, folder.phashes)}
    row_of = {path: row for row, path in enumerate(folder.paths)}
    previous = None
    if not rebuild and os.path.exists(os.path.join(output, INDEX_NAME)):
        try:
            previous = read_index(output)
        except ShardError as error:
            log(f"[WARNING] {error}; writing every shard again")
    if previous is not None and (previous.class_names, previous.image_size, previous.per_shard,
                                 previous.cache_version) != (
            folder.class_names, image_size, per_shard, dataset_lib.CACHE_VERSION):
        log("[INFO] classes, image size, --per-shard or decoder changed: writing every shard again")
        previous = None

    plan = _assign(previous, example_of, per_shard)  # [(id, [example, ...], old Shard or None)]
    summary = Summary(count=len(example_of), skipped=folder.skipped)
    read_rows = dataset_lib.row_reader(folder.images)
    shards, first = [], 0
    with contextlib.ExitStack() as stack:
        if hasattr(read_rows, "close"):
            stack.callback(read_rows.close)
        for shard_id, members, old in plan:
            if old is not None and old.examples == members and os.path.exists(
                    os.path.join(output, old.file)):
                shard = Shard(**{**vars(old), "first": first})
                summary.kept.append(shard.file)
            else:
                pixels = read_rows(np.asarray([row_of[m[0]] for m in members]))
                shard = _write_shard(output, shard_id, first, members, pixels,
                                     folder.class_names)
                summary.written.append(shard.file)
            shards.append(shard)
            first += shard.count
    write_bytes_atomic(os.path.join(output, "features.csv"), FEATURES_CSV.encode())
    write_json_atomic(os.path.join(output, INDEX_NAME), {
        "format": FORMAT, "version": VERSION, "class_names": folder.class_names,
        "image_size": image_size, "per_shard": per_shard, "encoding": "png",
        "cache_version": dataset_lib.CACHE_VERSION, "count": first,
        "shards": [vars(shard) for shard in shards]})
    named = {shard.file for shard in shards}
    for entry in os.scandir(output):  # only now: the old index named these until the line above
        if _SHARD_NAME.fullmatch(entry.name) and entry.name not in named:
            os.remove(entry.path)
            summary.removed.append(entry.name)
    log(f"[INFO] {first} image(s) in {len(shards)} shard(s) in {output}: wrote "
        f"{len(summary.written)}, kept {len(summary.kept)} unchanged, removed "
        f"{len(summary.removed)}")
    return summary


def _assign(previous, example_of, per_shard):
    """[(shard id, members, previous Shard or None)]: see the module's docstring."""
    plan, placed = [], set()
    for old in previous.shards if previous else []:
        members = [example_of[path] for path, *_ in old.examples if path in example_of]
        placed.update(member[0] for member in members)
        if members:
            plan.append((old.id, members, old))
    new = sorted((example for path, example in example_of.items() if path not in placed),
                 key=lambda example: (example[2], example[0]))  # content hash, then path
    if plan and len(plan[-1][1]) < per_shard and new:
        room = per_shard - len(plan[-1][1])
        plan[-1] = (plan[-1][0], plan[-1][1] + new[:room], plan[-1][2])
        new = new[room:]
    next_id = max([old.id + 1 for old in previous.shards] if previous else [0])
    for start in range(0, len(new), per_shard):
        plan.append((next_id, new[start:start + per_shard], None))
        next_id += 1
    return plan


def _write_shard(output, shard_id, first, members, pixels, class_names):
    """Write one shard file (temporary name, then renamed to its content name)."""
    import tensorflow as tf

    from PIL import Image

    def feature(value):
        if isinstance(value, int):
            return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    temporary = os.path.join(output, f".shard-{shard_id:05d}.tmp-{os.getpid()}")
    try:
        with tf.io.TFRecordWriter(temporary) as writer:
            for (path, label, sha, phash), image in zip(members, pixels):
                png = io.BytesIO()
                Image.fromarray(image).save(png, format="PNG")
                example = tf.train.Example(features=tf.train.Features(feature={
                    "image": feature(png.getvalue()), "label": feature(label),
                    "class_name": feature(class_names[label].encode()),
                    "path": feature(path.encode()), "sha256": feature(sha.encode()),
                    "phash": feature(phash.encode())}))
                writer.write(example.SerializeToString(deterministic=True))
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        name = f"shard-{shard_id:05d}-{digest[:12]}.tfrecord"
        size = os.path.getsize(temporary)
        os.replace(temporary, os.path.join(output, name))
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
    return Shard(name, shard_id, first, len(members), digest, size,
                 sorted(member[2] for member in members), [list(m) for m in members])


def make_dataset(shards_dir, *, num_workers=1, worker_index=0, shuffle=False, seed=None,
                 batch_size=None, keep_hashes=None, with_hash=False, verify_files=True):
    """A tf.data.Dataset of (uint8 image (S, S, 3), int64 label) from a shards folder.

    num_workers/worker_index: this worker reads only its own shard files
    (Index.worker_shards), so N processes together read everything once.
    shuffle: shuffles the file order and examples (buffer of one shard) with
    `seed`. keep_hashes: keep only examples whose source sha256 is in it (a
    part of the split). with_hash: elements are (image, label, sha256).
    """
    import tensorflow as tf

    index = read_index(shards_dir)
    shards = index.worker_shards(num_workers, worker_index)
    if verify_files:
        verify(index, shards)
    files = [os.path.join(index.folder, shard.file) for shard in shards]
    size = index.image_size
    spec = {"image": tf.io.FixedLenFeature([], tf.string),
            "label": tf.io.FixedLenFeature([], tf.int64),
            "sha256": tf.io.FixedLenFeature([], tf.string)}

    def parse(record):
        example = tf.io.parse_single_example(record, spec)
        image = tf.ensure_shape(tf.io.decode_png(example["image"], channels=3), (size, size, 3))
        if with_hash:
            return image, example["label"], example["sha256"]
        return image, example["label"]

    dataset = tf.data.Dataset.from_tensor_slices(files)
    if shuffle:
        dataset = dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.interleave(tf.data.TFRecordDataset, cycle_length=min(len(files), 4),
                                 num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if keep_hashes is not None:
        keys = sorted(set(keep_hashes)) or [""]  # a table needs one key; "" is no sha256
        table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
            tf.constant(keys, tf.string), tf.ones([len(keys)], tf.int32)), default_value=0)
        dataset = dataset.filter(lambda record: table.lookup(tf.io.parse_single_example(
            record, {"sha256": spec["sha256"]})["sha256"]) > 0)
    dataset = dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    if shuffle:
        dataset = dataset.shuffle(index.per_shard, seed=seed, reshuffle_each_iteration=True)
    if batch_size:
        dataset = dataset.batch(batch_size)
    return dataset.prefetch(tf.data.AUTOTUNE)


def as_image_folder(shards_dir, cache_dir):
    """The shards as a dataset.ImageFolder over a memory-mapped decoded cache.

    The cache is keyed on the index's content, written once (atomically) and
    reused; training's existing pipeline can then read a shards folder unchanged.
    """
    import tensorflow as tf

    index = read_index(shards_dir)
    with open(os.path.join(index.folder, INDEX_NAME), "rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()[:16]
    cache_path = os.path.join(cache_dir, f"shards-{digest}-{index.image_size}px.npy")
    shape = (index.count, index.image_size, index.image_size, 3)
    if not os.path.exists(cache_path):
        dataset_lib.check_cache_writable(cache_path)
        verify(index)
        files = [os.path.join(index.folder, shard.file) for shard in index.shards]
        records = tf.data.TFRecordDataset(files).map(  # index order: row i is example i
            lambda record: tf.io.decode_png(tf.io.parse_single_example(
                record, {"image": tf.io.FixedLenFeature([], tf.string)})["image"], channels=3))
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            header, {"descr": "|u1", "fortran_order": False, "shape": shape})
        os.makedirs(cache_dir, exist_ok=True)
        from pyimagesearch.persistence import atomic_path

        with atomic_path(cache_path) as temporary, open(temporary, "wb") as out:
            out.write(header.getvalue())
            for image in records.as_numpy_iterator():
                out.write(image.tobytes())
    images = np.load(cache_path, mmap_mode="r", allow_pickle=False)
    if images.shape != shape:
        raise ShardError(f"{cache_path}: cache does not match {INDEX_NAME}; delete it")
    examples = [example for shard in index.shards for example in shard.examples]
    return dataset_lib.ImageFolder(
        index.class_names, [e[0] for e in examples], np.asarray([e[1] for e in examples], np.int64),
        images, [], [e[2] for e in examples],
        np.asarray([int(e[3], 16) for e in examples], dtype=np.uint64), index.folder)
