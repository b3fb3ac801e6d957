"""load_image_folder: folder-per-class scanning, skipped files and the decode cache."""

import hashlib
import json
import os
import subprocess
import sys
import threading

import imagehash
import numpy as np
import pytest
from PIL import Image

import pyimagesearch.dataset as dataset_module
from conftest import BLUE, GREEN, RED, REPO_ROOT, assert_color_near, make_image, make_noise_image
from pyimagesearch.dataset import DatasetError, list_class_files, load_image_folder, row_reader

SIZE = 16


class LogLines(list):
    """A `log=` callable that keeps every line."""

    def __call__(self, line):
        self.append(line)

    def matching(self, text):
        return [line for line in self if text in line]


@pytest.fixture
def decode_calls(monkeypatch):
    """Records the path of every load_image call made by the dataset module."""
    calls, lock = [], threading.Lock()
    real_load_image = dataset_module.load_image

    def counting_load_image(path, image_size):
        with lock:
            calls.append(os.path.basename(path))
        return real_load_image(path, image_size)

    monkeypatch.setattr(dataset_module, "load_image", counting_load_image)
    return calls


def load(root, cache_dir, image_size=SIZE):
    log = LogLines()
    folder = load_image_folder(str(root), image_size, str(cache_dir), log=log)
    return folder, log


# --- classes and files ---------------------------------------------------------

def test_classes_are_sorted_folders_and_labels_match(dataset_root, tmp_path):
    folder, _ = load(dataset_root, tmp_path / "cache")
    assert folder.class_names == ["bulbasaur", "charmander", "squirtle"]
    assert folder.images.shape == (7, SIZE, SIZE, 3)
    assert folder.images.dtype == np.uint8
    assert folder.labels.shape == (7,)
    assert folder.skipped == []
    colors = {"bulbasaur": GREEN, "charmander": RED, "squirtle": BLUE}
    for path, label, image in zip(folder.paths, folder.labels, folder.images):
        class_name = folder.class_names[label]
        assert path.split(os.sep)[0] == class_name
        assert_color_near(image[8, 8], colors[class_name])


def test_hidden_folders_are_ignored_hidden_files_judged_by_content(dataset_root, tmp_path):
    make_image(dataset_root / ".ipynb_checkpoints" / "a.png")
    (dataset_root / "bulbasaur" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(64))
    make_image(dataset_root / "bulbasaur" / ".hidden.png")
    make_image(dataset_root / "bulbasaur" / ".thumbs" / "a.png")
    make_image(dataset_root / "bulbasaur" / "shiny" / "deeper" / "c.png", color=GREEN)
    folder, log = load(dataset_root, tmp_path / "cache")
    assert ".ipynb_checkpoints" not in folder.class_names
    assert len(folder.class_names) == 3
    assert os.path.join("bulbasaur", "shiny", "deeper", "c.png") in folder.paths
    assert os.path.join("bulbasaur", ".hidden.png") in folder.paths  # an image is an image
    assert os.path.join("bulbasaur", ".thumbs", "a.png") not in folder.paths
    # .DS_Store is not an image: one warning naming it, counted as skipped.
    assert len(folder.skipped) == 1 and ".DS_Store" in folder.skipped[0]
    assert len(log.matching("skipped")) == 1 and ".DS_Store" in log.matching("skipped")[0]
    assert len(folder.paths) == 9


def test_a_class_folder_may_sit_anywhere_in_the_tree_order(tmp_path):
    root = tmp_path / "dataset"
    for name in ["zubat", "Abra", "mew", "10-pidgey", "2-rattata"]:
        make_image(root / name / "a.png")
    class_names, files = list_class_files(str(root))
    assert class_names == sorted(class_names)
    assert [class_names[index] for _, index in files] == class_names


# --- broken files ----------------------------------------------------------------

BROKEN = {
    "notes.txt": b"not an image",
    "empty.jpg": b"",
    "garbage.png": bytes(range(256)) * 4,
}


def test_broken_files_are_skipped_with_one_line_each(dataset_root, tmp_path):
    for name, data in BROKEN.items():
        (dataset_root / "charmander" / name).write_bytes(data)
    folder, log = load(dataset_root, tmp_path / "cache")
    assert len(folder.skipped) == len(BROKEN)
    for name in BROKEN:
        lines = log.matching(name)
        assert len(lines) == 1, lines
        assert "skipped" in lines[0]
        assert not any(name in path for path in folder.paths)
    # The good images are all still there, labelled by folder.
    assert folder.images.shape == (7, SIZE, SIZE, 3)
    assert list(folder.labels) == [0, 0, 1, 1, 1, 2, 2]


def test_broken_files_are_still_reported_when_cached(dataset_root, tmp_path):
    (dataset_root / "squirtle" / "bad.jpg").write_bytes(b"nope")
    load(dataset_root, tmp_path / "cache")
    folder, log = load(dataset_root, tmp_path / "cache")
    assert len(folder.skipped) == 1
    assert len(log.matching("bad.jpg")) == 1


def test_skip_message_uses_the_relative_path(dataset_root, tmp_path):
    (dataset_root / "squirtle" / "bad.jpg").write_bytes(b"nope")
    folder, _ = load(dataset_root, tmp_path / "cache")
    assert folder.skipped[0].startswith(os.path.join("squirtle", "bad.jpg") + ":")


# --- the cache ---------------------------------------------------------------------

def test_second_run_decodes_nothing_and_gives_identical_pixels(dataset_root, tmp_path, decode_calls):
    first, first_log = load(dataset_root, tmp_path / "cache")
    first_pixels = np.array(first.images)
    assert len(decode_calls) == 7
    assert first_log.matching("Decoding")
    decode_calls.clear()
    second, second_log = load(dataset_root, tmp_path / "cache")
    assert decode_calls == []
    assert second_log.matching("Decoding") == []
    assert second.paths == first.paths
    np.testing.assert_array_equal(second.labels, first.labels)
    np.testing.assert_array_equal(np.asarray(second.images), first_pixels)


def test_changed_added_and_removed_files_are_picked_up(dataset_root, tmp_path, decode_calls):
    cache = tmp_path / "cache"
    load(dataset_root, cache)
    decode_calls.clear()

    changed = dataset_root / "squirtle" / "a.png"
    old_mtime = os.stat(changed).st_mtime
    make_image(changed, color=GREEN)  # same size on disk would not matter: mtime changes too
    os.utime(changed, (old_mtime + 10, old_mtime + 10))
    make_image(dataset_root / "bulbasaur" / "new.png", color=GREEN)
    os.remove(dataset_root / "charmander" / "b.png")

    folder, _ = load(dataset_root, cache)
    assert sorted(decode_calls) == ["a.png", "new.png"]
    assert os.path.join("charmander", "b.png") not in folder.paths
    assert os.path.join("bulbasaur", "new.png") in folder.paths
    assert len(folder.paths) == len(folder.images) == len(folder.labels) == 7
    by_path = dict(zip(folder.paths, folder.images))
    assert_color_near(by_path[os.path.join("squirtle", "a.png")][8, 8], GREEN)
    assert_color_near(by_path[os.path.join("squirtle", "b.png")][8, 8], BLUE)  # untouched
    assert_color_near(by_path[os.path.join("charmander", "c.jpg")][8, 8], RED, tolerance=20)

    decode_calls.clear()
    again, _ = load(dataset_root, cache)
    assert decode_calls == []
    np.testing.assert_array_equal(np.asarray(again.images), np.asarray(folder.images))


def test_a_file_that_breaks_or_gets_fixed_is_picked_up(dataset_root, tmp_path, decode_calls):
    cache = tmp_path / "cache"
    broken = dataset_root / "squirtle" / "fixed later.png"
    broken.write_bytes(b"half a download")
    first, _ = load(dataset_root, cache)
    assert len(first.skipped) == 1 and len(first.images) == 7

    good = dataset_root / "charmander" / "a.png"
    good.write_bytes(b"overwritten")
    make_image(broken, color=BLUE)
    for path in (good, broken):
        os.utime(path, ns=(os.stat(path).st_mtime_ns + 10**9,) * 2)
    decode_calls.clear()
    folder, log = load(dataset_root, cache)
    assert sorted(decode_calls) == ["a.png", "fixed later.png"]
    assert folder.skipped == [os.path.join("charmander", "a.png") + ": not an image file"]
    assert os.path.join("squirtle", "fixed later.png") in folder.paths
    assert len(folder.images) == 7
    colors = [GREEN, RED, BLUE]
    for label, image in zip(folder.labels, folder.images):
        assert_color_near(image[8, 8], colors[label], tolerance=20)


def test_only_removing_files_keeps_rows_and_labels_aligned(dataset_root, tmp_path, decode_calls):
    cache = tmp_path / "cache"
    load(dataset_root, cache)
    os.remove(dataset_root / "bulbasaur" / "a.png")  # the first row
    decode_calls.clear()
    folder, _ = load(dataset_root, cache)
    assert decode_calls == []
    assert len(folder.images) == 6
    colors = [GREEN, RED, BLUE]
    for label, image in zip(folder.labels, folder.images):
        assert_color_near(image[8, 8], colors[label], tolerance=20)


def test_each_image_size_has_its_own_cache(dataset_root, tmp_path, decode_calls):
    cache = tmp_path / "cache"
    small, _ = load(dataset_root, cache, image_size=8)
    large, _ = load(dataset_root, cache, image_size=24)
    assert small.images.shape[1:] == (8, 8, 3)
    assert large.images.shape[1:] == (24, 24, 3)
    assert len(decode_calls) == 14  # both sizes decoded everything once
    decode_calls.clear()
    again, _ = load(dataset_root, cache, image_size=8)
    assert decode_calls == []
    assert again.images.shape[1:] == (8, 8, 3)
    assert len(list(cache.glob("*.npy"))) == 2


def test_cache_is_plain_npy_and_json_without_pickle(dataset_root, tmp_path):
    cache = tmp_path / "cache"
    load(dataset_root, cache)
    names = sorted(os.listdir(cache))
    assert [os.path.splitext(name)[1] for name in names] == [".json", ".npy"]  # no .tmp left
    array = np.load(cache / names[1], allow_pickle=False)
    assert array.shape == (7, SIZE, SIZE, 3) and array.dtype == np.uint8
    index = json.loads((cache / names[0]).read_text())
    assert index["image_size"] == SIZE
    assert len(index["files"]) == 7


@pytest.mark.parametrize("damage", ["truncate npy", "garbage json", "delete npy"])
def test_damaged_cache_is_rebuilt(dataset_root, tmp_path, decode_calls, damage):
    cache = tmp_path / "cache"
    first, _ = load(dataset_root, cache)
    first_pixels = np.array(first.images)
    (npy,) = cache.glob("*.npy")
    (index,) = cache.glob("*.json")
    del first
    if damage == "truncate npy":
        npy.write_bytes(npy.read_bytes()[:100])
    elif damage == "garbage json":
        index.write_text("{not json")
    else:
        npy.unlink()
    decode_calls.clear()
    folder, _ = load(dataset_root, cache)
    assert len(decode_calls) == 7
    np.testing.assert_array_equal(np.asarray(folder.images), first_pixels)


def test_cache_index_pointing_past_the_array_is_rebuilt(dataset_root, tmp_path, decode_calls):
    # e.g. a run killed between replacing the .npy and the .json.
    cache = tmp_path / "cache"
    first, _ = load(dataset_root, cache)
    first_pixels = np.array(first.images)
    (npy,) = cache.glob("*.npy")
    del first
    np.save(npy, np.zeros((2, SIZE, SIZE, 3), dtype=np.uint8))
    decode_calls.clear()
    folder, _ = load(dataset_root, cache)
    np.testing.assert_array_equal(np.asarray(folder.images), first_pixels)


def test_run_killed_while_writing_the_index_leaves_no_wrong_pixels(
        dataset_root, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    load(dataset_root, cache)
    # Same number of rows, different layout: the first row goes, a last one comes.
    os.remove(dataset_root / "bulbasaur" / "a.png")
    make_image(dataset_root / "zubat" / "a.png", color=(120, 0, 120))

    def killed(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(dataset_module.json, "dump", killed)
    with pytest.raises(KeyboardInterrupt):
        load(dataset_root, cache)  # new .npy in place, new .json never written
    monkeypatch.undo()

    folder, _ = load(dataset_root, cache)
    colors = [GREEN, RED, BLUE, (120, 0, 120)]
    assert len(folder.images) == 7
    for label, image in zip(folder.labels, folder.images):
        assert_color_near(image[8, 8], colors[label], tolerance=20)


@pytest.mark.parametrize("files", ['[]', '{"a.png": {"row": "x"}, "b.png": {"row": 0}}', '"text"'])
def test_cache_index_of_the_wrong_shape_is_rebuilt(dataset_root, tmp_path, files):
    cache = tmp_path / "cache"
    load(dataset_root, cache)
    (index,) = cache.glob("*.json")
    text = index.read_text()
    files_text = json.dumps(json.loads(text)["files"])
    assert files_text in text
    index.write_text(text.replace(files_text, files))
    folder, _ = load(dataset_root, cache)
    assert len(folder.images) == 7



def test_an_index_never_maps_onto_another_array(dataset_root, tmp_path, decode_calls):
    # Same shape, rows in another order: e.g. another process replaced the array.
    cache = tmp_path / "cache"
    first, _ = load(dataset_root, cache)
    first_pixels = np.array(first.images)
    (npy,) = cache.glob("*.npy")
    np.save(tmp_path / "other.npy", first_pixels[::-1])
    os.replace(tmp_path / "other.npy", npy)
    del first
    decode_calls.clear()
    folder, _ = load(dataset_root, cache)
    assert len(decode_calls) == 7
    np.testing.assert_array_equal(np.asarray(folder.images), first_pixels)


# --- content and perceptual hashes -------------------------------------------------------------

def test_hashes_and_phashes_are_computed_once_and_kept_in_the_cache(dataset_root, tmp_path,
                                                                     decode_calls):
    make_noise_image(dataset_root / "squirtle" / "noise.png", size=(24, 24))
    cache = tmp_path / "cache"
    first, _ = load(dataset_root, cache)
    for path, sha256, phash, image in zip(first.paths, first.hashes, first.phashes, first.images):
        assert sha256 == hashlib.sha256((dataset_root / path).read_bytes()).hexdigest()
        assert phash == int(str(imagehash.phash(Image.fromarray(np.asarray(image)))), 16)
    assert first.phashes.dtype == np.uint64 and len(first.phashes) == len(first.paths) == 8
    assert len(set(first.phashes.tolist())) > 1  # the noise image is not a solid colour
    assert first.root == str(dataset_root)

    make_image(dataset_root / "bulbasaur" / "new.png", color=GREEN)  # a partial rebuild
    decode_calls.clear()
    second, _ = load(dataset_root, cache)
    assert decode_calls == ["new.png"]
    decode_calls.clear()
    warm, _ = load(dataset_root, cache)
    assert decode_calls == []
    for folder in (second, warm):
        by_path = dict(zip(folder.paths, zip(folder.hashes, folder.phashes.tolist())))
        for path, sha256, phash in zip(first.paths, first.hashes, first.phashes.tolist()):
            assert by_path[path] == (sha256, phash)



@pytest.mark.parametrize("damage", [{"phash": "not hex"}, {"sha256": "short"}, {"phash": None}])
def test_a_cache_entry_with_unreadable_hashes_is_rebuilt(dataset_root, tmp_path, damage):
    cache = tmp_path / "cache"
    first, _ = load(dataset_root, cache)
    (index_path,) = cache.glob("*.json")
    index = json.loads(index_path.read_text())
    index["files"][first.paths[0]].update(damage)
    index_path.write_text(json.dumps(index))
    folder, _ = load(dataset_root, cache)
    assert folder.hashes == first.hashes
    np.testing.assert_array_equal(folder.phashes, first.phashes)

# --- interruptions, handles and locks ----------------------------------------------------------

@pytest.mark.parametrize("when", ["decoding", "writing the index"])
def test_ctrl_c_during_a_rebuild_leaves_no_temporary_file(dataset_root, tmp_path, monkeypatch,
                                                          when):
    cache = tmp_path / "cache"
    real_load_image = dataset_module.load_image

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    def interrupted_on_one_file(path, image_size):
        if path.endswith("b.png"):
            raise KeyboardInterrupt
        return real_load_image(path, image_size)

    if when == "decoding":
        monkeypatch.setattr(dataset_module, "load_image", interrupted_on_one_file)
    else:
        monkeypatch.setattr(dataset_module.json, "dump", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load(dataset_root, cache)
    assert [name for name in os.listdir(cache) if "tmp" in name or name.endswith(".lock")] == []
    monkeypatch.undo()
    folder, _ = load(dataset_root, cache)
    assert len(folder.images) == 7


def test_row_reader_closes_its_file(dataset_root, tmp_path):
    folder, _ = load(dataset_root, tmp_path / "cache")
    open_files = lambda: len(os.listdir("/proc/self/fd"))  # noqa: E731
    before = open_files()
    read = row_reader(folder.images)
    np.testing.assert_array_equal(read([3, 1]), np.asarray(folder.images)[[3, 1]])
    assert open_files() == before + 1
    read.close()
    assert open_files() == before
    read = row_reader(folder.images)
    del read  # dropped without close(): the finalizer closes it, no ResourceWarning
    assert open_files() == before


HOLD_LOCK = """
import sys
from pyimagesearch import locking
with locking.exclusive(sys.argv[1], "test"):
    print("holding", flush=True)
    sys.stdin.read()
"""


def test_a_rebuild_while_another_process_holds_the_cache_names_it(dataset_root, tmp_path):
    cache = tmp_path / "cache"
    lock_path = dataset_module.cache_path_for(str(cache), str(dataset_root), SIZE) + ".lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, lock_path], cwd=REPO_ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "holding\n"
        with pytest.raises(DatasetError, match=f"in use by another pokedex process "
                                               f"\\(pid {holder.pid}\\)"):
            load(dataset_root, cache)
        assert not list(cache.glob("*.npy"))  # nothing written meanwhile
    finally:
        holder.communicate("", timeout=30)
        holder.stdout.close()
    folder, _ = load(dataset_root, cache)  # released: the rebuild goes ahead
    assert len(folder.images) == 7


def test_a_warm_cache_is_read_while_another_process_holds_the_lock(dataset_root, tmp_path,
                                                                   decode_calls):
    cache = tmp_path / "cache"
    load(dataset_root, cache)
    lock_path = dataset_module.cache_path_for(str(cache), str(dataset_root), SIZE) + ".lock"
    decode_calls.clear()
    with dataset_module.locking.exclusive(lock_path, "test"):  # flock: per open file
        folder, _ = load(dataset_root, cache)
    assert len(folder.images) == 7 and decode_calls == []

# --- symlinks ------------------------------------------------------------------------

def test_symlink_loop_does_not_hang(dataset_root, tmp_path):
    class_dir = dataset_root / "squirtle"
    os.symlink(class_dir, class_dir / "loop")
    os.symlink(dataset_root, class_dir / "up")
    folder, _ = load(dataset_root, tmp_path / "cache")
    assert len(folder.paths) == 7
    assert folder.skipped == []


def test_dangling_symlink_is_skipped_with_a_warning(dataset_root, tmp_path):
    os.symlink(tmp_path / "gone.png", dataset_root / "squirtle" / "dangling.png")
    folder, log = load(dataset_root, tmp_path / "cache")
    assert len(folder.paths) == 7
    assert len(folder.skipped) == 1
    lines = log.matching("dangling.png")
    assert len(lines) == 1 and "skipped" in lines[0]


def test_symlink_to_an_image_is_loaded(dataset_root, tmp_path):
    target = make_image(tmp_path / "elsewhere" / "mew.png", color=BLUE)
    os.symlink(target, dataset_root / "squirtle" / "link.png")
    folder, _ = load(dataset_root, tmp_path / "cache")
    assert os.path.join("squirtle", "link.png") in folder.paths


# --- datasets the user must fix ----------------------------------------------------------

def test_missing_dataset_folder(tmp_path):
    with pytest.raises(DatasetError, match="not found") as excinfo:
        load(tmp_path / "no such dataset", tmp_path / "cache")
    assert "no such dataset" in str(excinfo.value)


def test_empty_dataset_folder(tmp_path):
    (tmp_path / "dataset").mkdir()
    with pytest.raises(DatasetError, match="no class folders"):
        load(tmp_path / "dataset", tmp_path / "cache")


def test_files_but_no_class_folders(tmp_path):
    make_image(tmp_path / "dataset" / "a.png")
    make_image(tmp_path / "dataset" / "b.png")
    with pytest.raises(DatasetError, match="no class folders"):
        load(tmp_path / "dataset", tmp_path / "cache")


def test_only_hidden_folders(tmp_path):
    make_image(tmp_path / "dataset" / ".ipynb_checkpoints" / "a.png")
    with pytest.raises(DatasetError, match="no class folders"):
        load(tmp_path / "dataset", tmp_path / "cache")


def test_class_folders_without_files(tmp_path):
    (tmp_path / "dataset" / "pikachu").mkdir(parents=True)
    (tmp_path / "dataset" / "eevee").mkdir()
    with pytest.raises(DatasetError, match="no files"):
        load(tmp_path / "dataset", tmp_path / "cache")



# --- awkward names -----------------------------------------------------------------------

@pytest.mark.parametrize(
    "name",
    ["with space.png", "pokémon ☆.png", "00000021.jpg?resize=1196,1196", "x.png:large", "新.jpeg"],
)
def test_awkward_file_names_load(tmp_path, name):
    root = tmp_path / "data set"
    make_image(root / "Mr. Mime" / name, color=RED)
    make_image(root / "Mr. Mime" / "plain.png", color=RED)
    folder, _ = load(root, tmp_path / "cache dir")
    assert os.path.join("Mr. Mime", name) in folder.paths
    assert folder.skipped == []
    # And the cache (JSON index keyed on the name) reads back.
    again, _ = load(root, tmp_path / "cache dir")
    assert again.paths == folder.paths


def test_awkward_class_folder_names(tmp_path):
    root = tmp_path / "dataset"
    for class_name in ["Nidoran♂", "Nidoran♀", "Farfetch'd", "Mr. Mime", "Type: Null?"]:
        make_image(root / class_name / "a.png")
    folder, _ = load(root, tmp_path / "cache")
    assert folder.class_names == sorted(["Nidoran♂", "Nidoran♀", "Farfetch'd", "Mr. Mime",
                                         "Type: Null?"])
    assert len(folder.images) == 5 and list(folder.labels) == [0, 1, 2, 3, 4]


# --- stratified_split ----------------------------------------------------------------------

def test_stratified_split():
    from pyimagesearch.dataset import stratified_split

    labels = np.repeat(np.arange(4), [10, 20, 50, 1])
    warnings = LogLines()
    train, holdout = stratified_split(labels, 0.2, seed=7, warn=warnings,
                                      class_names=["a", "b", "c", "lonely"])

    # Deterministic for a seed, different for another.
    again = stratified_split(labels, 0.2, seed=7, warn=LogLines())
    np.testing.assert_array_equal(train, again[0])
    np.testing.assert_array_equal(holdout, again[1])
    other = stratified_split(labels, 0.2, seed=8, warn=LogLines())
    assert not np.array_equal(holdout, other[1])

    # A partition: no overlap, nothing lost.
    assert set(train).isdisjoint(holdout)
    assert sorted(np.concatenate([train, holdout])) == list(range(len(labels)))

    # Proportions kept per class: 20% of 10, 20, 50.
    assert [int((labels[holdout] == c).sum()) for c in range(4)] == [2, 4, 10, 0]

    # The one-image class goes to training, with a warning naming it.
    assert labels[train].tolist().count(3) == 1
    assert len(warnings) == 1 and "class lonely" in warnings[0] and "1 image" in warnings[0]
