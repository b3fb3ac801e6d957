"""make_split / reuse_split: groups (groups.csv, exact and near duplicates) never straddle parts."""

import csv
import hashlib
import json
import os
import time

import numpy as np
import pytest
from PIL import Image

from pyimagesearch import splitting
from pyimagesearch.dataset import DatasetError, ImageFolder, load_image_folder
from pyimagesearch.splitting import make_split, near_duplicate_pairs, reuse_split

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class LogLines(list):
    def __call__(self, line):
        self.append(line)

    def matching(self, text):
        return [line for line in self if text in line]


def far_apart_hashes(count, seed=0):
    """Random 64-bit hashes, pairwise more than NEAR_DUPLICATE_BITS apart (checked)."""
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 2**64, count, dtype=np.uint64)
    first, _ = near_duplicate_pairs(hashes)
    assert len(first) == 0
    return hashes


def synthetic_folder(group_sizes, root="", seed=0):
    """An ImageFolder without pixels: group_sizes[class][group] rows, distinct hashes.

    Paths are `<class>/g<group>_<frame>.png`; the returned groups list gives each
    row's `<class>/g<group>` (what a groups.csv would say).
    """
    paths, labels, groups = [], [], []
    for label, sizes in enumerate(group_sizes):
        for group, size in enumerate(sizes):
            for frame in range(size):
                paths.append(f"c{label}/g{group}_{frame}.png")
                labels.append(label)
                groups.append(f"c{label}/g{group}")
    hashes = [hashlib.sha256(path.encode()).hexdigest() for path in paths]
    folder = ImageFolder([f"c{label}" for label in range(len(group_sizes))], paths,
                         np.asarray(labels, dtype=np.int64), None, [], hashes,
                         far_apart_hashes(len(paths), seed), str(root))
    return folder, groups


def write_groups_csv(root, rows):
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "groups.csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "group"])
        writer.writerows(rows)


def part_of_rows(split, count):
    parts = np.full(count, -1)
    for part, rows in enumerate((split.train, split.val, split.test)):
        assert np.all(parts[rows] == -1), "a row in two parts"
        parts[rows] = part
    assert np.all(parts >= 0), "a row in no part"
    return parts


def split(folder, seed=0, val_split=0.2, test_split=0.2, **kwargs):
    return make_split(folder, val_split=val_split, test_split=test_split, seed=seed,
                      log=kwargs.pop("log", LogLines()), **kwargs)


# --- groups ---------------------------------------------------------------------------------

def test_groups_from_groups_csv_never_straddle_parts(tmp_path):
    folder, groups = synthetic_folder([[3, 5, 2, 7, 4, 6]] * 3, root=tmp_path)
    write_groups_csv(tmp_path, list(zip(folder.paths, groups))
                     + [["c0/gone.png", "c0/g0"]])  # a file no longer there: ignored
    log = LogLines()
    for seed in range(10):
        parts = part_of_rows(split(folder, seed=seed, log=log), len(folder.paths))
        for group in set(groups):
            rows = [row for row, name in enumerate(groups) if name == group]
            assert len(set(parts[rows])) == 1, f"{group} straddles parts (seed {seed})"
    assert "18 groups from 18 sources" in log.matching("split by group")[0]


def test_without_groups_csv_each_file_is_its_own_group(tmp_path):
    folder, _ = synthetic_folder([[1] * 10] * 2, root=tmp_path)
    result = split(folder)
    assert result.num_groups == 20 and result.merged == 0
    assert [len(result.train), len(result.val), len(result.test)] == [12, 4, 4]


def test_an_explicit_groups_file_is_used_and_a_bad_one_is_named(tmp_path):
    folder, groups = synthetic_folder([[2, 2, 2]] * 2)
    write_groups_csv(tmp_path / "elsewhere", zip(folder.paths, groups))
    assert split(folder, groups_file=tmp_path / "elsewhere" / "groups.csv").num_groups == 6
    (tmp_path / "bad.csv").write_text("file,label\na,b\n")
    with pytest.raises(DatasetError, match="bad.csv: the first line must be 'path,group'"):
        split(folder, groups_file=tmp_path / "bad.csv")
    (tmp_path / "short.csv").write_text("path,group\nc0/g0_0.png\n")
    with pytest.raises(DatasetError, match="short.csv, line 2: expected two fields"):
        split(folder, groups_file=tmp_path / "short.csv")


def structured_image(path, seed, size=64):
    """A smooth random pattern (so its perceptual hash has structure), saved as PNG."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((size, size), Image.BICUBIC)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image.save(path)
    return image


@pytest.fixture
def duplicates_root(tmp_path):
    """Two classes of 8 distinct images each; a@... has an exact, a noised, a resized
    and a JPEG copy in its class, and b0 a near copy filed under the other class."""
    root = tmp_path / "data"
    for label in ("a", "b"):
        for index in range(8):
            structured_image(root / label / f"{label}{index}.png", seed=ord(label) * 100 + index)
    original = Image.open(root / "a" / "a0.png").convert("RGB")
    (root / "a" / "exact copy.png").write_bytes((root / "a" / "a0.png").read_bytes())
    noisy = np.asarray(original, dtype=np.int16) + np.random.default_rng(1).integers(-6, 7, (64, 64, 3))
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(root / "a" / "noised.png")
    original.resize((50, 50), Image.LANCZOS).save(root / "a" / "resized.png")
    original.save(root / "a" / "recompressed.jpg", quality=70)
    Image.open(root / "b" / "b0.png").convert("RGB").resize((60, 60)).save(root / "a" / "b0 twin.png")
    return root


def test_exact_and_near_duplicates_land_in_one_part(duplicates_root, tmp_path):
    folder = load_image_folder(str(duplicates_root), 32, str(tmp_path / "cache"), log=LogLines())
    row = {path.replace(os.sep, "/"): index for index, path in enumerate(folder.paths)}
    family = [row[name] for name in ("a/a0.png", "a/exact copy.png", "a/noised.png",
                                     "a/resized.png", "a/recompressed.jpg")]
    twins = [row["b/b0.png"], row["a/b0 twin.png"]]  # one image under two labels
    distances = np.bitwise_count(folder.phashes[family] ^ folder.phashes[family[0]])
    assert distances.max() <= splitting.NEAR_DUPLICATE_BITS, distances
    log = LogLines()
    for seed in range(12):
        parts = part_of_rows(split(folder, seed=seed, val_split=0.25, test_split=0.25, log=log),
                             len(folder.paths))
        assert len(set(parts[family])) == 1, f"seed {seed}: {parts[family]}"
        assert len(set(parts[twins])) == 1, f"seed {seed}: {parts[twins]}"
    # 21 files; 1 exact duplicate, 3 near copies and the twin merged away: 16 groups.
    assert log.matching("split by group")[0].startswith(
        "[INFO] split by group: 16 groups from 21 sources (1 merged as exact duplicates, "
        "4 as near duplicates)")


def test_a_group_spanning_classes_goes_by_its_majority_label(tmp_path):
    # Class c1's group g0 (2 rows) is a near duplicate of c0's g0 (3 rows): the merged group
    # belongs to c0, so c1 keeps only its other singleton groups.
    folder, groups = synthetic_folder([[3, 1, 1, 1, 1], [2, 1, 1, 1]], root=tmp_path)
    write_groups_csv(tmp_path, zip(folder.paths, groups))
    folder.phashes[[7, 8]] = folder.phashes[0] ^ np.uint64(0b101)
    labels = splitting._majority_labels(splitting.group_rows(folder).groups, folder.labels, 8)
    assert sorted(labels.tolist()) == [0] * 5 + [1] * 3
    for seed in range(10):
        parts = part_of_rows(split(folder, seed=seed), len(folder.paths))
        assert len(set(parts[[0, 1, 2, 7, 8]])) == 1


# --- the split ------------------------------------------------------------------------------

def test_split_is_seeded_and_stable(tmp_path):
    folder, groups = synthetic_folder([[2] * 15, [3] * 12, [1] * 30], root=tmp_path)
    write_groups_csv(tmp_path, zip(folder.paths, groups))
    first, again, other = split(folder, seed=5), split(folder, seed=5), split(folder, seed=6)
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
        assert getattr(first, name).dtype == np.int64
        assert np.all(np.diff(getattr(first, name)) > 0)  # sorted, unique
    assert not np.array_equal(first.test, other.test)


def test_test_set_does_not_depend_on_val_split():
    folder, _ = synthetic_folder([[1] * 40, [1] * 25])
    test_sets = {tuple(split(folder, seed=3, val_split=share, test_split=0.15).test)
                 for share in (0.1, 0.2, 0.3, 0.5)}
    assert len(test_sets) == 1
    no_test = split(folder, seed=3, test_split=0)
    assert len(no_test.test) == 0 and len(no_test.val) == 13  # 20% of 40 and of 25


@pytest.mark.parametrize("seed", range(5))
def test_shares_are_close_to_their_targets(tmp_path, seed):
    rng = np.random.default_rng(seed)
    sizes = [rng.integers(1, 6, 60).tolist(), rng.integers(1, 4, 90).tolist()]
    folder, groups = synthetic_folder(sizes, root=tmp_path)
    write_groups_csv(tmp_path, zip(folder.paths, groups))
    result = split(folder, seed=seed, val_split=0.2, test_split=0.15)
    assert result.num_groups == 150
    for part, target in ((result.val, 0.2), (result.test, 0.15)):
        for label, class_sizes in enumerate(sizes):
            share = np.sum(folder.labels[part] == label) / sum(class_sizes)
            # Greedy over shuffled groups: within half the largest group of the target.
            assert abs(share - target) <= max(class_sizes) / 2 / sum(class_sizes), (label, share)


def test_a_class_with_too_few_groups_is_named_in_a_warning(tmp_path):
    folder, groups = synthetic_folder([[4, 4, 4, 4], [5], [3, 2]], root=tmp_path)
    write_groups_csv(tmp_path, zip(folder.paths, groups))
    log = LogLines()
    result = split(folder, log=log)
    parts = part_of_rows(result, len(folder.paths))
    assert set(parts[folder.labels == 1]) == {0}  # one group: all training
    assert sorted(parts[folder.labels == 2]) == [0, 0, 0, 1, 1]  # two: training, validation
    (one,) = log.matching("class c1 ")
    assert one.startswith("[WARNING]") and "only 1 group" in one and "all used for training" in one
    (two,) = log.matching("class c2 ")
    assert "only 2 groups" in two and "none for testing" in two
    assert not log.matching("class c0 ")
    assert not split(folder, test_split=0, log=(quiet := LogLines())).test.size
    assert not quiet.matching("class c2 ")  # no test part asked for: nothing to warn about


def test_validation_never_ends_up_empty():
    folder, _ = synthetic_folder([[1], [1]])
    with pytest.raises(DatasetError, match="every class is too small to hold out validation"):
        split(folder)


# --- reuse ----------------------------------------------------------------------------------

def test_reuse_split_keeps_parts_sends_new_files_to_training_and_counts_removed(tmp_path):
    folder, groups = synthetic_folder([[1] * 20, [1] * 20])
    first = split(folder, seed=1)
    state = json.loads(json.dumps(first.to_state()))  # as stored with the run
    assert sorted(state) == ["test", "train", "val"]
    assert sum(map(len, state.values())) == len(folder.paths)

    # Three files removed, two new ones (one of them a near duplicate of a test image).
    removed = [int(first.train[0]), int(first.val[0]), int(first.test[0])]
    keep = np.setdiff1d(np.arange(len(folder.paths)), removed)
    test_row = int(first.test[1])
    paths = [folder.paths[row] for row in keep] + ["c0/new.png", "c1/twin.png"]
    hashes = [folder.hashes[row] for row in keep] + ["n" * 64, "t" * 64]
    phashes = np.r_[folder.phashes[keep], far_apart_hashes(50, seed=9)[-1],
                    folder.phashes[test_row] ^ np.uint64(0b11)]
    labels = np.r_[folder.labels[keep], 0, 1]
    changed = ImageFolder(folder.class_names, paths, labels, None, [], hashes, phashes, "")
    log = LogLines()
    reused = reuse_split(changed, state, log=log)

    parts = part_of_rows(reused, len(paths))
    by_hash = {sha: part for part, name in enumerate(("train", "val", "test"))
               for sha in state[name]}
    for row, sha in enumerate(hashes[:-2]):
        assert parts[row] == by_hash[sha]
    assert parts[-2] == 0  # new: training
    assert parts[-1] == 2  # new near duplicate of a test image: follows it to test
    assert (reused.new_rows, reused.removed) == (2, 3)
    assert log == ["[INFO] reusing the stored split: 1 new images go to training, 3 removed, "
                   "1 new images follow a grouped validation or test image"]


def test_reuse_split_of_an_unchanged_folder_is_the_same_split():
    folder, _ = synthetic_folder([[1] * 12, [1] * 9])
    first = split(folder, seed=4)
    again = reuse_split(folder, first.to_state(), log=LogLines())
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(again, name), getattr(first, name))
    assert (again.new_rows, again.removed) == (0, 0)


@pytest.mark.parametrize("replaced, refused", [(10, False), (11, True), (20, True)])
def test_reuse_split_refuses_a_folder_holding_under_half_of_the_stored_images(replaced, refused):
    folder, _ = synthetic_folder([[1] * 10, [1] * 10], root="other data")
    state = split(folder, seed=2).to_state()
    hashes = [f"{row:064x}" if row < replaced else sha for row, sha in enumerate(folder.hashes)]
    changed = ImageFolder(folder.class_names, folder.paths, folder.labels, None, [], hashes,
                          folder.phashes, folder.root)
    if not refused:  # half of them still there: the same dataset, pruned and grown
        assert reuse_split(changed, state, log=LogLines()).removed == replaced
        return
    with pytest.raises(DatasetError, match=f"^other data is not the dataset the checkpoint was "
                       f"made on: only {20 - replaced} of the 20 images .*--restart"):
        reuse_split(changed, state, log=LogLines())


@pytest.mark.parametrize("state", [{}, {"train": [], "val": [1], "test": []}, []])
def test_reuse_split_refuses_a_malformed_state(state):
    folder, _ = synthetic_folder([[1] * 4, [1] * 4])
    with pytest.raises(DatasetError, match="stored split is not valid"):
        reuse_split(folder, state, log=LogLines())


# --- near-duplicate search ---------------------------------------------------------------------

@pytest.mark.parametrize("max_distance", [0, 2, 4, 9])
def test_near_duplicate_pairs_match_a_brute_force_search(max_distance):
    rng = np.random.default_rng(max_distance)
    centres = rng.integers(0, 2**64, 40, dtype=np.uint64)
    # Clusters: each centre with copies 0-12 bits away, so every distance is tried.
    flips = [np.bitwise_or.reduce(np.uint64(1) << rng.choice(64, k, replace=False).astype(np.uint64))
             if k else np.uint64(0) for k in rng.integers(0, 13, 400)]
    hashes = np.r_[centres, centres[rng.integers(0, 40, 400)] ^ np.array(flips)]  # repeats too
    first, second = near_duplicate_pairs(hashes, max_distance)
    found = {(min(a, b), max(a, b)) for a, b in zip(first.tolist(), second.tolist())}
    distances = np.bitwise_count(hashes[:, None] ^ hashes[None, :])
    expected = {(a, b) for a, b in zip(*np.nonzero(distances <= max_distance)) if a < b}
    assert found == expected and expected


def test_grouping_100k_images_takes_seconds():
    count = 100_000
    rng = np.random.default_rng(0)
    phashes = rng.integers(0, 2**64, count, dtype=np.uint64)
    phashes[1::10] = phashes[::10] ^ np.uint64(0b1001)  # 10,000 planted near duplicates
    hashes = [f"{index:064x}" for index in range(count)]
    folder = ImageFolder(["a", "b"], [f"{index % 2}/{index}.png" for index in range(count)],
                         np.arange(count) % 2, None, [], hashes, phashes, "")
    started = time.perf_counter()
    grouping = splitting.group_rows(folder)
    result = make_split(folder, val_split=0.2, test_split=0.15, seed=0, log=LogLines())
    elapsed = time.perf_counter() - started
    assert grouping.near_merged >= 10_000 and grouping.num_groups <= count - 10_000
    assert len(result.train) + len(result.val) + len(result.test) == count
    assert elapsed < 10, f"{elapsed:.1f} s"


# --- the bundled dataset --------------------------------------------------------------------------

def test_bundled_groups_csv_lists_every_frame_with_its_animation():
    root = os.path.join(REPO, "dataset")
    with open(os.path.join(root, "groups.csv"), newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["path", "group"]
    listed = dict(rows[1:])
    on_disk = sorted(f"{name}/{file}" for name in os.listdir(root)
                     if os.path.isdir(os.path.join(root, name))
                     for file in os.listdir(os.path.join(root, name)))
    assert sorted(listed) == on_disk
    for path, group in listed.items():
        class_name, file_name = path.split("/")
        assert group == f"{class_name}/{file_name.rsplit('_', 1)[0]}"
    assert len(set(listed.values())) == 20

