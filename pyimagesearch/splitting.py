"""Train / validation / test split by group, so that twins never straddle parts.

A random split of animation frames or of a scraped folder puts near-identical
images on both sides, and the test score then measures memory. Here rows are
first joined into groups, and every group goes wholly to one part. A group is
the union of:

- a source, from an optional `groups.csv` at the dataset root:

      path,group
      pikachu/front_000.png,pikachu/front
      pikachu/front_001.png,pikachu/front

  `path` is relative to the dataset root with `/` separators, `group` is any
  text. Files with the same group stay together; rows naming files that are
  not in the dataset are ignored; files not listed are each their own source.
  The class folders are sub-folders, so the csv is never taken for a class.
  scripts/build_dataset.py writes one for the bundled dataset (a frame's group
  is its animation, `<class>/<variant>`).
- exact duplicates: files with the same sha256;
- near duplicates: perceptual hashes (imagehash.phash, 64 bits, computed by
  pyimagesearch.dataset) within NEAR_DUPLICATE_BITS bits of each other.

Measured on the bundled dataset/ (580 frames, 20 animations in groups.csv):
phash is computed on grayscale, so a shiny animation (a recolour of the same
poses) sits at distance 0 from the normal one, and every class merges into
two groups, front+shiny and back+back_shiny (10 groups in all; bulbasaur's
keep apart at 0 and 2 bits and join from 4). No threshold up to 8 joins two
classes (the closest frames of different Pokemon are 10 bits apart). Without
groups.csv, 4 bits leave 77 groups. So the bundled dataset has two
independent sources per class: it can be split into training and validation
by pose, and cannot give an honest test part (each class warns).

Nothing here imports TensorFlow.
"""

import csv
import os
from dataclasses import dataclass, field

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from pyimagesearch.dataset import DatasetError

# Hamming distance (of 64 bits) up to which two images are near duplicates.
# Measured on copies of 97 bundled frames (at 96 px): resized to 0.6x and
# noised (sd 8) copies all within 4 bits, JPEG q60 copies 96 of 97 (one at 6);
# a frame's nearest neighbour in its own animation is at 2 (median); different
# Pokemon are 10 or more apart. 4 catches copies with room below the closest
# distinct images and keeps the pigeonhole search fast (5 blocks of 12-13
# bits). Crops are not caught (a 5% crop moves the hash by up to 14 bits).
NEAR_DUPLICATE_BITS = 4
GROUPS_FILE = "groups.csv"
# reuse_split: the share of a stored split's images (by sha256) a folder must still
# hold to count as the same dataset, grown or pruned, rather than another one.
MIN_KEPT_SHARE = 0.5
PARTS = ("train", "val", "test")  # row parts are 0, 1, 2: a larger number is more held out
TRAIN, VAL, TEST = range(3)


@dataclass
class Grouping:
    groups: np.ndarray  # (N,) int64 group id per row, 0..num_groups-1
    num_groups: int
    num_sources: int  # groups.csv groups plus unlisted files, before any merging
    exact_merged: int  # sources merged away as exact duplicates (same sha256)
    near_merged: int  # then merged away as near duplicates (phash)


@dataclass
class Split:
    train: np.ndarray  # sorted int64 row indices into the ImageFolder
    val: np.ndarray
    test: np.ndarray
    hashes: list = field(repr=False, default_factory=list)  # sha256 of every folder row
    num_groups: int = 0
    merged: int = 0  # groups merged away by exact or near duplicates
    new_rows: int = 0  # reuse_split: rows whose file was not in the stored split
    removed: int = 0  # reuse_split: stored files no longer in the folder

    def to_state(self):
        """JSON-ready {"train": [sha256...], "val": [...], "test": [...]} for reuse_split."""
        return {name: sorted({self.hashes[row] for row in rows})
                for name, rows in zip(PARTS, (self.train, self.val, self.test))}


def make_split(folder, *, val_split, test_split, seed, groups_file=None, log=print):
    """Stratified group split of an ImageFolder into train / val / test rows.

    `val_split` and `test_split` are shares of the whole dataset (0 test: no
    test part). Groups go to parts per class (a group spanning classes goes by
    its majority label); within a class they are shuffled by `seed` and taken
    so each part's image share is as close as possible to its target. The test
    part is drawn first, so a seed gives the same test set whatever val_split.
    `groups_file` defaults to groups.csv at the dataset root, when present.
    """
    grouping = group_rows(folder, groups_file)
    sizes = np.bincount(grouping.groups, minlength=grouping.num_groups)
    group_labels = _majority_labels(grouping.groups, folder.labels, grouping.num_groups)
    group_parts = np.full(grouping.num_groups, TRAIN)
    for class_index in np.unique(group_labels):
        class_groups = np.flatnonzero(group_labels == class_index)
        # One generator per class: adding a class does not reshuffle the others.
        order = list(np.random.default_rng([seed, int(class_index)]).permutation(class_groups))
        images = int(sizes[class_groups].sum())
        name = folder.class_names[class_index]
        if len(order) == 1:
            log(f"[WARNING] class {name} has only 1 group of images ({images}): "
                "all used for training, none held out")
            continue
        if test_split and len(order) == 2:
            log(f"[WARNING] class {name} has only 2 groups of images: one for training, "
                "one for validation, none for testing")
        if test_split and len(order) >= 3:
            test = _take(order, sizes, test_split * images, most=len(order) - 2)
            taken = set(test)
            group_parts[test] = TEST
            order = [group for group in order if group not in taken]
        group_parts[_take(order, sizes, val_split * images, most=len(order) - 1)] = VAL
    split = _rows_of_parts(group_parts[grouping.groups], folder.hashes, grouping)
    if len(split.val) == 0:
        raise DatasetError("every class is too small to hold out validation images")
    log(f"[INFO] split by group: {grouping.num_groups} groups from {grouping.num_sources} "
        f"sources ({grouping.exact_merged} merged as exact duplicates, {grouping.near_merged} "
        f"as near duplicates), train {len(split.train)} / val {len(split.val)} / "
        f"test {len(split.test)} images")
    return split


def reuse_split(folder, stored_state, *, groups_file=None, log=print):
    """Assign rows to the parts of a split stored by `Split.to_state()`, by content hash.

    Files not in the stored split go to training, except those grouped (same
    groups.csv group, exact or near duplicate) with a stored validation or test
    image: they follow it, so a new twin of a test image never trains.

    The split is the dataset's fingerprint: a folder holding fewer than
    MIN_KEPT_SHARE of its images is another dataset (a checkpoint of folder A
    must not train on folder B), refused with the --restart hint; one with
    images added, or a few removed or replaced, reuses it.
    """
    stored = _read_state(stored_state)
    kept = len(set(stored).intersection(folder.hashes))
    if kept < MIN_KEPT_SHARE * len(stored):
        raise DatasetError(
            f"{folder.root or 'the dataset'} is not the dataset the checkpoint was made on: "
            f"only {kept} of the {len(stored)} images of its stored split are in it (at least "
            f"{MIN_KEPT_SHARE:.0%} must be); run again with --restart to train from scratch")
    grouping = group_rows(folder, groups_file)
    parts = np.array([stored.get(sha256, -1) for sha256 in folder.hashes], dtype=np.int64)
    new = parts < 0
    held_out = np.full(grouping.num_groups, TRAIN)  # the most held-out stored part per group
    np.maximum.at(held_out, grouping.groups[~new], parts[~new])
    parts[new] = held_out[grouping.groups[new]]
    split = _rows_of_parts(parts, folder.hashes, grouping)
    split.new_rows = int(new.sum())
    split.removed = len(set(stored) - set(folder.hashes))
    followers = int((parts[new] > TRAIN).sum())
    log(f"[INFO] reusing the stored split: {split.new_rows - followers} new images go to "
        f"training, {split.removed} removed"
        + (f", {followers} new images follow a grouped validation or test image"
           if followers else ""))
    if len(split.val) == 0:
        raise DatasetError("none of the stored split's validation images is left in the "
                           "dataset; start a new split (train.py --restart)")
    return split


def group_rows(folder, groups_file=None):
    """Join the rows of an ImageFolder into groups (see the module docstring)."""
    count = len(folder.paths)
    if groups_file is None and folder.root:
        candidate = os.path.join(folder.root, GROUPS_FILE)
        groups_file = candidate if os.path.isfile(candidate) else None
    edges = [_same_key_edges(*read_groups_file(groups_file, folder.paths))
             if groups_file else _no_edges()]
    num_sources, _ = _components(count, edges)
    edges.append(_same_key_edges(np.arange(count), folder.hashes))
    exact_groups, _ = _components(count, edges)
    # Equal phashes are joined like exact duplicates, then distinct values compared.
    values, first_rows, inverse = np.unique(np.asarray(folder.phashes, dtype=np.uint64),
                                            return_index=True, return_inverse=True)
    edges.append((np.arange(count), first_rows[inverse]))
    first, second = near_duplicate_pairs(values)
    edges.append((first_rows[first], first_rows[second]))
    num_groups, groups = _components(count, edges)
    return Grouping(groups.astype(np.int64), num_groups, num_sources,
                    num_sources - exact_groups, exact_groups - num_groups)


def read_groups_file(path, paths):
    """(rows, group names) for the files of `paths` listed in the groups.csv at `path`."""
    row_of = {relative.replace(os.sep, "/"): row for row, relative in enumerate(paths)}
    rows, names = [], []
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header != ["path", "group"]:
                raise DatasetError(f"{path}: the first line must be 'path,group', "
                                   f"found {','.join(header or [])!r}")
            for record in reader:
                if len(record) != 2:
                    raise DatasetError(f"{path}, line {reader.line_num}: expected two fields "
                                       f"'path,group', found {len(record)}")
                if record[0] in row_of:
                    rows.append(row_of[record[0]])
                    names.append(record[1])
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DatasetError(f"{path}: cannot read the groups file ({error})") from None
    return np.asarray(rows, dtype=np.int64), names


def near_duplicate_pairs(hashes, max_distance=NEAR_DUPLICATE_BITS):
    """(first, second) index arrays of the pairs of 64-bit `hashes` within `max_distance` bits.

    Pigeonhole: split the bits into max_distance + 1 blocks; two hashes that
    differ in at most max_distance bits agree exactly on at least one block. So
    per block, sort by the block's value and compare only hashes in one bucket,
    vectorised. A pair may be reported more than once. For distinct random
    hashes the work grows about linearly with their number.
    """
    if not 0 <= max_distance < 64:
        raise ValueError(f"max_distance must be within 0..63 bits, got {max_distance}")
    hashes = np.asarray(hashes, dtype=np.uint64)
    bounds = np.linspace(0, 64, max_distance + 2).round().astype(int)
    firsts, seconds = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
    for low, high in zip(bounds[:-1], bounds[1:]):
        blocks = (hashes >> np.uint64(low)) & np.uint64((1 << int(high - low)) - 1)
        order = np.argsort(blocks, kind="stable")
        blocks = blocks[order]
        # Sorted positions i with blocks[i] == blocks[i + step], for step = 1, 2, ...
        # (a bucket of b hashes takes b - 1 steps, each on fewer candidates).
        candidates, step = np.flatnonzero(blocks[1:] == blocks[:-1]), 1
        while len(candidates):
            first, second = order[candidates], order[candidates + step]
            close = np.bitwise_count(hashes[first] ^ hashes[second]) <= max_distance
            firsts.append(first[close])
            seconds.append(second[close])
            step += 1
            candidates = candidates[candidates + step < len(blocks)]
            candidates = candidates[blocks[candidates + step] == blocks[candidates]]
    return np.concatenate(firsts), np.concatenate(seconds)


def _take(order, sizes, target, most):
    """Groups from `order` whose image total comes closest to `target` (greedy, in
    order): at least one, at most `most`."""
    taken, total = [], 0
    for group in order:
        if len(taken) == most:
            break
        if abs(total + sizes[group] - target) < abs(total - target):
            taken.append(group)
            total += sizes[group]
    if not taken and most > 0:
        taken = [min(order, key=lambda group: sizes[group])]  # the first smallest group
    return taken


def _majority_labels(groups, labels, num_groups):
    """(num_groups,) the most frequent label of each group (the lowest on a tie)."""
    num_classes = int(labels.max(initial=0)) + 1
    keys, counts = np.unique(groups * num_classes + labels, return_counts=True)
    group_of, label_of = keys // num_classes, keys % num_classes
    order = np.lexsort((label_of, -counts, group_of))  # by group, then most rows first
    group_of, label_of = group_of[order], label_of[order]
    first = np.r_[True, group_of[1:] != group_of[:-1]]
    majority = np.zeros(num_groups, dtype=np.int64)
    majority[group_of[first]] = label_of[first]
    return majority


def _rows_of_parts(row_parts, hashes, grouping):
    train, val, test = (np.flatnonzero(row_parts == part).astype(np.int64) for part in range(3))
    return Split(train, val, test, list(hashes), grouping.num_groups,
                 grouping.exact_merged + grouping.near_merged)


def _read_state(stored_state):
    """{sha256: part} from a to_state() dict; the most held-out part wins on a clash."""
    try:
        parts = {}
        for part, name in enumerate(PARTS):
            for sha256 in stored_state[name]:
                if not isinstance(sha256, str):
                    raise TypeError(sha256)
                parts[sha256] = max(part, parts.get(sha256, TRAIN))
        return parts
    except (KeyError, TypeError) as error:
        raise DatasetError("the stored split is not valid (expected lists of sha256 under "
                           f"'train', 'val' and 'test'; problem: {error!r})") from None


def _same_key_edges(rows, keys):
    """Edges joining each of `rows` to the first row with the same key."""
    if len(rows) == 0:
        return _no_edges()
    _, first, inverse = np.unique(np.asarray(keys), return_index=True, return_inverse=True)
    rows = np.asarray(rows, dtype=np.int64)
    return rows, rows[first[inverse]]


def _no_edges():
    return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)


def _components(count, edges):
    """(number, (count,) component id) of the graph on `count` rows with these edges."""
    first = np.concatenate([pair[0] for pair in edges]).astype(np.int64)
    second = np.concatenate([pair[1] for pair in edges]).astype(np.int64)
    graph = coo_matrix((np.ones(len(first), dtype=np.int32), (first, second)),
                       shape=(count, count))
    return connected_components(graph, directed=False)
