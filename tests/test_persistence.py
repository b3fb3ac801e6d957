"""Saving and loading never loses work and never runs code from a file."""

import os
import pickle

import numpy as np
import pytest
from sklearn.preprocessing import LabelBinarizer

from pyimagesearch import persistence


def test_label_binarizer_round_trip(tmp_path):
    path = tmp_path / "lb.pickle"
    persistence.save_label_binarizer(LabelBinarizer().fit(["pikachu", "bulbasaur", "mewtwo"]), path)
    loaded = persistence.load_label_binarizer(path)
    assert list(loaded.classes_) == ["bulbasaur", "mewtwo", "pikachu"]
    # Still a plain pickle, so the tutorial's own code can read it too.
    assert list(pickle.loads(path.read_bytes()).classes_) == list(loaded.classes_)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch PWNED_BY_PICKLE",))


def test_malicious_pickle_is_refused_without_running_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "lb.pickle"
    path.write_bytes(pickle.dumps(_Exploit()))
    with pytest.raises(persistence.ArtifactError, match="refusing to load .*system"):
        persistence.load_label_binarizer(path)
    assert not (tmp_path / "PWNED_BY_PICKLE").exists()


def test_pickle_of_another_object_is_refused(tmp_path):
    path = tmp_path / "lb.pickle"
    path.write_bytes(pickle.dumps({"classes_": ["a"]}))
    with pytest.raises(persistence.ArtifactError, match="not a fitted LabelBinarizer"):
        persistence.load_label_binarizer(path)
    path.write_bytes(b"not a pickle at all")
    with pytest.raises(persistence.ArtifactError):
        persistence.load_label_binarizer(path)


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "plot.png"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with persistence.atomic_path(target) as temporary:
            with open(temporary, "wb") as handle:
                handle.write(b"half of the new fi")
            raise RuntimeError("disk full")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["plot.png"]  # no temporary left behind


def _tiny_model(keras):
    return keras.Sequential([keras.Input((12, 12, 3)), keras.layers.Rescaling(1 / 255),
                             keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])


@pytest.mark.parametrize("name", ["pokedex.model", "model.keras", "no_extension"])
def test_model_saved_under_any_name_in_native_format_and_reloaded(tmp_path, name):
    keras = pytest.importorskip("keras")
    model = _tiny_model(keras)
    path = tmp_path / name
    persistence.save_model(model, path)
    assert path.read_bytes()[:4] == persistence.ZIP_SIGNATURE  # Keras native (.keras zip)
    x = np.random.default_rng(0).uniform(0, 255, (2, 12, 12, 3)).astype("float32")
    np.testing.assert_allclose(persistence.load_model(path).predict_on_batch(x),
                               model.predict_on_batch(x), atol=1e-6)


def test_tutorial_era_h5_model_loads(tmp_path):
    keras = pytest.importorskip("keras")
    model = _tiny_model(keras)
    model.save(tmp_path / "old.h5")
    os.rename(tmp_path / "old.h5", tmp_path / "pokedex.model")  # the tutorial's name
    loaded = persistence.load_model(tmp_path / "pokedex.model")
    assert loaded.output_shape == (None, 3)


def test_model_with_lambda_layer_is_refused(tmp_path):
    keras = pytest.importorskip("keras")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(lambda x: x * 2)])
    model.save(tmp_path / "evil.keras")
    with pytest.raises(persistence.ArtifactError, match="(?i)lambda|unsafe|safe_mode"):
        persistence.load_model(tmp_path / "evil.keras")


def test_non_model_file_is_refused(tmp_path):
    path = tmp_path / "pokedex.model"
    path.write_text("hello")
    with pytest.raises(persistence.ArtifactError, match="not a Keras model"):
        persistence.load_model(path)
    with pytest.raises(persistence.ArtifactError, match="not found"):
        persistence.load_model(tmp_path / "missing.model")


def test_shipped_model_has_no_optimizer_state_and_carries_its_description(tmp_path):
    keras = pytest.importorskip("keras")
    import zipfile

    model = keras.Sequential([keras.Input((12, 12, 3)), keras.layers.Rescaling(1 / 255),
                              keras.layers.Flatten(), keras.layers.Dense(256),
                              keras.layers.Dense(3, activation="softmax")])  # ~112k weights
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    x = np.random.default_rng(0).uniform(0, 255, (4, 12, 12, 3)).astype("float32")
    model.fit(x, np.eye(3)[[0, 1, 2, 0]], epochs=1, verbose=0)  # Adam's moments now exist
    with_optimizer = tmp_path / "with_optimizer.keras"
    model.save(with_optimizer)
    description = {"format": "pokedex", "run_id": "0123abcd", "class_names": ["a", "b", "c"]}
    path = tmp_path / ".pokedex.model.tmp"  # training writes temporaries, then renames
    persistence.save_model(model, path, description=description)
    # Adam keeps two moments per weight: the file without them is about a third.
    assert path.stat().st_size < 0.5 * with_optimizer.stat().st_size
    with zipfile.ZipFile(path) as archive:
        assert not any("optimizer" in name for name in archive.namelist())
    assert persistence.read_description(path) == description
    loaded = persistence.load_model(path)  # safe_mode=True accepts the extra member
    np.testing.assert_allclose(loaded.predict_on_batch(x), model.predict_on_batch(x), atol=1e-6)


def test_description_is_none_for_tutorial_h5_and_plain_keras_files(tmp_path):
    keras = pytest.importorskip("keras")
    model = _tiny_model(keras)
    model.save(tmp_path / "old.h5")
    persistence.save_model(model, tmp_path / "plain.model")
    (tmp_path / "junk.model").write_bytes(b"PK\x03\x04 not really a zip")
    for name in ("old.h5", "plain.model", "junk.model", "missing.model"):
        assert persistence.read_description(tmp_path / name) is None, name


def test_description_is_read_from_compressed_or_commented_zips_too(tmp_path):
    """The quick reader handles the plain zip save_model writes; others go through zipfile."""
    import json
    import zipfile

    description = {"run_id": "ab12", "class_names": ["a"]}
    for name, compression, comment in [("stored", zipfile.ZIP_STORED, b""),
                                       ("deflated", zipfile.ZIP_DEFLATED, b""),
                                       ("commented", zipfile.ZIP_STORED, b"x" * 300)]:
        path = tmp_path / name
        with zipfile.ZipFile(path, "w", compression) as archive:
            archive.writestr("config.json", "{}" * 1000)
            archive.writestr(persistence.DESCRIPTION_MEMBER, json.dumps(description))
            archive.comment = comment
        assert persistence.read_description(path) == description, name
        path.write_bytes(path.read_bytes()[:-40 - len(comment)])  # the end record cut off
        assert persistence.read_description(path) is None, name
