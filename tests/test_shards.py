"""prepare.py and pyimagesearch/shards.py: TFRecord shards written once, read by workers."""

import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO_ROOT, make_noise_image, run_without_tensorflow
from pyimagesearch import dataset, shards

SIZE = 16
CLASSES = {"bulbasaur": 3, "charmander": 3, "squirtle": 2}  # 8 images: shards of 3, 3, 2


def make_dataset_folder(root):
    seed = 0
    for class_name, count in CLASSES.items():
        (root / class_name).mkdir(parents=True)
        for number in range(count):
            seed += 1
            make_noise_image(root / class_name / f"img {number}.png", size=(20, 20), seed=seed)
    return root


@pytest.fixture
def prepared(tmp_path):
    """(dataset root, shards folder, cache folder), prepared with 3 images per shard;
    paths with spaces, as users have."""
    root = make_dataset_folder(tmp_path / "my data")
    output, cache = tmp_path / "my shards", tmp_path / "cache"
    shards.prepare(root, output, image_size=SIZE, per_shard=3, cache_dir=cache, log=lambda _: None)
    return root, output, cache


def read_all(output, **options):
    """[(image, label, sha256)] of every example, through the tf.data reader."""
    data = shards.make_dataset(output, with_hash=True, **options)
    return [(image, int(label), sha.decode()) for image, label, sha in data.as_numpy_iterator()]


def cached_pixels(root, cache):
    folder = dataset.load_image_folder(root, SIZE, cache, log=lambda _: None)
    return folder, {sha: np.asarray(folder.images[row]) for row, sha in enumerate(folder.hashes)}


def test_round_trip_gives_the_cache_pixels_labels_and_fixed_counts(prepared):
    root, output, cache = prepared
    index = shards.read_index(output)
    assert index.class_names == sorted(CLASSES) and index.image_size == SIZE
    assert [shard.count for shard in index.shards] == [3, 3, 2]  # fixed except the last
    assert [shard.first for shard in index.shards] == [0, 3, 6]
    assert (output / "features.csv").read_text().startswith("name,type,shape,meaning\nimage,")
    folder, pixels = cached_pixels(root, cache)
    examples = read_all(output)
    assert len(examples) == 8 and {sha for *_, sha in examples} == set(folder.hashes)
    for image, label, sha in examples:
        assert image.dtype == np.uint8 and image.shape == (SIZE, SIZE, 3)
        np.testing.assert_array_equal(image, pixels[sha])  # PNG: lossless
        assert label == folder.labels[folder.hashes.index(sha)]
    # The other features, read raw: class name, relative source path, perceptual hash.
    import tensorflow as tf

    record = next(iter(tf.data.TFRecordDataset(str(output / index.shards[0].file))))
    example = tf.train.Example.FromString(record.numpy()).features.feature
    path, label, sha, phash = index.shards[0].examples[0]
    assert example["path"].bytes_list.value[0].decode() == path
    assert example["class_name"].bytes_list.value[0].decode() == index.class_names[label]
    assert example["sha256"].bytes_list.value[0].decode() == sha
    assert int(example["phash"].bytes_list.value[0], 16) == int(
        folder.phashes[folder.paths.index(path)])
    assert sorted(index.shards[0].hashes) == index.shards[0].hashes


def test_a_changed_and_an_added_file_rewrite_only_their_shards(prepared):
    root, output, cache = prepared
    before = shards.read_index(output)
    untouched = before.shards[1]
    stat = os.stat(output / untouched.file)
    content = (output / untouched.file).read_bytes()
    changed = before.shards[0].examples[0][0]  # a file of the first shard
    make_noise_image(root / changed, size=(20, 20), seed=99)
    make_noise_image(root / "squirtle" / "new one.png", size=(20, 20), seed=100)

    summary = shards.prepare(root, output, image_size=SIZE, per_shard=3, cache_dir=cache,
                             log=lambda _: None)
    after = shards.read_index(output)
    # the changed file's shard, and the last one (it had room for the new file)
    assert summary.kept == [untouched.file]
    assert sorted(summary.written) == sorted([after.shards[0].file, after.shards[2].file])
    assert sorted(summary.removed) == sorted([before.shards[0].file, before.shards[2].file])
    assert [shard.count for shard in after.shards] == [3, 3, 3]
    assert [shard.id for shard in after.shards] == [0, 1, 2]
    assert after.shards[0].examples[0][0] == changed  # rewritten in its old place
    assert after.shards[2].examples[-1][0] == "squirtle/new one.png"
    assert after.shards[1] == untouched
    new_stat = os.stat(output / untouched.file)
    assert (new_stat.st_ino, new_stat.st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)
    assert (output / untouched.file).read_bytes() == content
    assert sorted(os.listdir(output)) == sorted(
        ["features.csv", "shards.json"] + [shard.file for shard in after.shards])
    folder, pixels = cached_pixels(root, cache)
    examples = read_all(output)
    assert sorted(sha for *_, sha in examples) == sorted(folder.hashes)
    for image, _, sha in examples:
        np.testing.assert_array_equal(image, pixels[sha])

    # A removed file leaves its shard (rewritten, one smaller); nothing else moves.
    os.remove(root / after.shards[1].examples[0][0])
    summary = shards.prepare(root, output, image_size=SIZE, per_shard=3, cache_dir=cache,
                             log=lambda _: None)
    assert summary.written == [shards.read_index(output).shards[1].file]
    assert [shard.count for shard in shards.read_index(output).shards] == [3, 2, 3]
    # --rebuild cuts fixed runs again.
    shards.prepare(root, output, image_size=SIZE, per_shard=3, cache_dir=cache, rebuild=True,
                   log=lambda _: None)
    assert [shard.count for shard in shards.read_index(output).shards] == [3, 3, 2]


def test_an_interrupted_prepare_leaves_the_previous_shards_readable(prepared, monkeypatch):
    root, output, cache = prepared
    files_before = sorted(os.listdir(output))
    examples_before = read_all(output)
    make_noise_image(root / "bulbasaur" / "img 0.png", size=(20, 20), seed=77)
    make_noise_image(root / "bulbasaur" / "extra.png", size=(20, 20), seed=78)
    write_shard, calls = shards._write_shard, []

    def fail_on_second(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return write_shard(*args)

    monkeypatch.setattr(shards, "_write_shard", fail_on_second)
    with pytest.raises(KeyboardInterrupt):
        shards.prepare(root, output, image_size=SIZE, per_shard=3, cache_dir=cache,
                       log=lambda _: None)
    # The first new shard is there, unnamed by the index; the old set still verifies.
    after = os.listdir(output)
    assert set(files_before) <= set(after) and len(after) == len(files_before) + 1
    shards.verify(shards.read_index(output))
    assert [sha for *_, sha in read_all(output)] == [sha for *_, sha in examples_before]


def test_two_workers_read_disjoint_shards_that_cover_everything(prepared):
    _, output, _ = prepared
    everything = sorted(sha for *_, sha in read_all(output))
    first = [sha for *_, sha in read_all(output, num_workers=2, worker_index=0)]
    second = [sha for *_, sha in read_all(output, num_workers=2, worker_index=1)]
    index = shards.read_index(output)
    assert [s.file for s in index.worker_shards(2, 0)] == [index.shards[0].file,
                                                            index.shards[2].file]
    assert len(first) == 5 and len(second) == 3
    assert sorted(first + second) == everything
    with pytest.raises(shards.ShardError, match="3 shard\\(s\\) for 4 workers"):
        shards.make_dataset(output, num_workers=4, worker_index=0)
    with pytest.raises(shards.ShardError, match="worker_index must be 0 to 1"):
        shards.make_dataset(output, num_workers=2, worker_index=2)


def test_options_shuffle_batch_and_keep_hashes(prepared):
    _, output, _ = prepared
    index = shards.read_index(output)
    batches = list(shards.make_dataset(output, shuffle=True, seed=1, batch_size=4)
                   .as_numpy_iterator())
    assert [images.shape for images, _ in batches] == [(4, SIZE, SIZE, 3)] * 2
    keep = set(index.shards[1].hashes[:2])
    assert {sha for *_, sha in read_all(output, keep_hashes=keep)} == keep
    assert read_all(output, keep_hashes=[]) == []


def test_as_image_folder_materialises_the_decoded_cache_layout(prepared, tmp_path):
    root, output, cache = prepared
    folder = shards.as_image_folder(output, tmp_path / "shard cache")
    again = shards.as_image_folder(output, tmp_path / "shard cache")  # reused, not rewritten
    assert isinstance(folder.images, np.memmap) and folder.images.filename == again.images.filename
    source, pixels = cached_pixels(root, cache)
    assert folder.class_names == source.class_names
    assert sorted(folder.paths) == sorted(source.paths)
    for row, sha in enumerate(folder.hashes):
        np.testing.assert_array_equal(folder.images[row], pixels[sha])
        assert folder.labels[row] == source.labels[source.hashes.index(sha)]
        assert folder.phashes[row] == source.phashes[source.hashes.index(sha)]


def test_damaged_or_missing_shards_and_index_are_one_line_errors(prepared, tmp_path):
    _, output, _ = prepared
    index = shards.read_index(output)
    shard_path = output / index.shards[1].file
    data = bytearray(shard_path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard_path.write_bytes(bytes(data))
    with pytest.raises(shards.ShardError, match=f"{shard_path}: damaged shard"):
        shards.make_dataset(output)
    shards.make_dataset(output, num_workers=3, worker_index=0)  # another worker's shard: fine
    shard_path.unlink()
    with pytest.raises(shards.ShardError, match=f"{shard_path}: No such file"):
        shards.make_dataset(output)
    with pytest.raises(shards.ShardError, match="no shards index"):
        shards.read_index(tmp_path / "nowhere")
    (output / "shards.json").write_text('{"format": "pokedex-shards", "version": 1')
    with pytest.raises(shards.ShardError, match="shards.json: damaged shards index"):
        shards.make_dataset(output)
    (output / "shards.json").write_text('{"format": "something else"}')
    with pytest.raises(shards.ShardError, match="not a version 1 pokedex-shards index"):
        shards.read_index(output / "shards.json")
    assert issubclass(shards.ShardError, dataset.DatasetError)


def test_a_damaged_field_in_shards_json_is_one_line_naming_it(prepared):
    """A hand-edited or damaged index: a label out of range, a bad phash or sha256,
    a wrong count or first: ShardError (one line, exit 2 in the scripts), never a
    KeyError or ValueError from deep inside training (review 23, item 18)."""
    import json

    _, output, _ = prepared
    index_path = output / "shards.json"
    good = json.loads(index_path.read_text())
    damages = {
        "label 7": lambda raw: raw["shards"][0]["examples"][0].__setitem__(1, 7),
        "label -1": lambda raw: raw["shards"][0]["examples"][0].__setitem__(1, -1),
        "phash 'zz'": lambda raw: raw["shards"][1]["examples"][0].__setitem__(3, "zz"),
        "sha256 'x'": lambda raw: raw["shards"][1]["examples"][1].__setitem__(2, "x"),
        "first 5": lambda raw: raw["shards"][1].__setitem__("first", 5),
        "example": lambda raw: raw["shards"][2]["examples"].__setitem__(0, "a"),
    }
    for expected, damage in damages.items():
        raw = json.loads(json.dumps(good))
        damage(raw)
        index_path.write_text(json.dumps(raw))
        with pytest.raises(shards.ShardError) as caught:
            shards.read_index(output)
        message = str(caught.value)
        assert message.startswith(f"{index_path}: damaged entry") and expected in message, message
        assert "\n" not in message
    index_path.write_text(json.dumps(good))
    assert shards.read_index(output).count == 8


def run_prepare(*args, cwd):
    return subprocess.run([sys.executable, os.path.join(REPO_ROOT, "prepare.py"), *map(str, args)],
                          cwd=cwd, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, POKEDEX_CACHE_DIR=str(cwd / "cache")))


def test_the_script_writes_updates_and_fails_in_one_line(tmp_path):
    root = make_dataset_folder(tmp_path / "my data")
    result = run_prepare("--dataset", root, "--output", tmp_path / "out put", "--image-size", SIZE,
                         "--per-shard", 3, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "8 image(s) in 3 shard(s)" in result.stdout and "wrote 3, kept 0" in result.stdout
    assert result.stderr == ""  # TensorFlow's start-up chatter is silenced
    (tmp_path / "out put" / "shards.json").write_text("not json")
    result = run_prepare("--dataset", root, "--output", tmp_path / "out put", "--image-size", SIZE,
                         "--per-shard", 3, cwd=tmp_path)
    assert result.returncode == 0 and "damaged shards index" in result.stdout
    assert "wrote 3, kept 0 unchanged, removed 0" in result.stdout  # same content, same names
    assert len(shards.read_index(tmp_path / "out put").shards) == 3

    # Usage errors: one line, exit 2, before TensorFlow is imported.
    error = run_without_tensorflow("prepare", ["--dataset", tmp_path / "missing", "--output",
                                               tmp_path / "o"], cwd=tmp_path)
    assert error.strip().splitlines() == [
        f"prepare.py: error: argument -d/--dataset: folder not found: {tmp_path / 'missing'}"]
    error = run_without_tensorflow("prepare", ["--dataset", root, "--output", tmp_path / "o",
                                               "--per-shard", 0], cwd=tmp_path)
    assert "--per-shard: must be 1 to 100000" in error


def test_train_py_trains_on_a_shards_folder_like_on_the_images(prepared, tmp_path):
    pytest.importorskip("tensorflow")
    from conftest import training_settings
    from pyimagesearch import training

    root, output, cache = prepared
    settings = training_settings(tmp_path, epochs=1, image_size=SIZE, val_split=0.3,
                                 dataset=str(output), cache_dir=str(tmp_path / "train cache"))
    lines = []
    training.train(settings, log=lines.append)
    assert any("reading 8 images from 3 shard file(s)" in line for line in lines)
    from pyimagesearch.inference import Classifier

    classifier = Classifier(settings["model"], settings["labelbin"])
    assert classifier.class_names == sorted(CLASSES)
    folder, _ = cached_pixels(root, cache)  # the same pixels as training from the folder saw
    assert classifier.predict_arrays(np.asarray(folder.images)).shape == (8, 3)
    wrong_size = training_settings(tmp_path / "again", epochs=1, image_size=SIZE * 2,
                                   dataset=str(output))
    with pytest.raises(dataset.DatasetError, match=f"pass --image-size {SIZE}"):
        training.train(wrong_size, log=lambda _: None)
