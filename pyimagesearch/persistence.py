"""Writing and reading the files a training run produces, safely.

Everything is written atomically (a temporary file in the same folder, then
os.replace), so an interrupted run or a full disk leaves the previous model,
labels and plot intact. Reading never executes code from a file: the label
pickle goes through an allow-list unpickler and models load with Keras
safe_mode.
"""

import contextlib
import hashlib
import io
import json
import os
import pickle
import re
import struct
import tempfile
import warnings

import numpy as np

_UMASK = os.umask(0)
os.umask(_UMASK)

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ZIP_SIGNATURE = b"PK\x03\x04"


class ArtifactError(ValueError):
    """A model or label file that is missing, unsafe or does not fit."""


@contextlib.contextmanager
def atomic_path(path, suffix=""):
    """Yield a temporary path beside `path`; on success rename it over `path`.

    `suffix` lets writers that check extensions (Keras wants .keras or .h5)
    write to a name they accept, whatever the final name is. The name holds the
    writer's process id (.NAME.PID.RANDOM.tmpSUFFIX), so that one a killed
    process left behind can be told from one being written (remove_stale_temporaries).
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        prefix=f".{os.path.basename(path)}.{os.getpid()}.", suffix=f".tmp{suffix}", dir=folder
    )
    os.close(handle)
    os.chmod(temporary, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions
    try:
        yield temporary
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())  # data on disk before the rename
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


# The end of atomic_path's names: .PID.RANDOM.tmp, then the writer's extension if any.
_TEMPORARY_END = re.compile(r"\.(\d+)\.[A-Za-z0-9_]+\.tmp(\.[A-Za-z0-9]+)?$")


def remove_stale_temporaries(paths=(), folders=()):
    """Remove atomic_path's temporaries whose writer is no longer running; return their paths.

    `paths`: files whose temporaries (.NAME.PID...) are looked for beside them;
    `folders`: folders whose every such temporary counts. A temporary of a
    process still alive (this one, or a concurrent writer) is left alone.
    """
    wanted = {}  # folder -> basenames, or None for any
    for path in paths:
        wanted.setdefault(os.path.dirname(os.path.abspath(path)), set()).add(
            os.path.basename(path))
    for folder in folders:
        wanted[os.path.abspath(folder)] = None
    removed = []
    for folder, bases in wanted.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            match = _TEMPORARY_END.search(entry.name)
            name = entry.name.lstrip(".")  # a temporary's temporary starts with two dots
            if not match or not entry.name.startswith(".") or (
                    bases is not None and not any(name.startswith(f"{base}.") for base in bases)):
                continue
            try:
                if _is_dead(int(match.group(1))) and entry.is_file(follow_symlinks=False):
                    os.remove(entry.path)
                    removed.append(entry.path)
            except OSError:
                pass  # gone already, or not ours to remove
    return removed


def _is_dead(pid):
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: another user's process, alive
        return False
    return False


def write_bytes_atomic(path, data):
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        handle.write(data)


def write_json_atomic(path, value):
    write_bytes_atomic(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())


DESCRIPTION_MEMBER = "pokedex.json"  # this project's description, inside the .keras zip
MAX_DESCRIPTION_BYTES = 4 * 1024 * 1024  # a description is a few KiB; refuse zip bombs


def save_model(model, path, description=None):
    """Save in Keras's native format at exactly `path`, whatever its extension.

    The optimizer's state is left out (for SmallerVGGNet at 96 px: ~35 MB
    instead of ~104 MB with Adam's two moments per weight); the file is for
    inference, and resuming uses the checkpoint folder. `description`, a
    JSON-able dict (class names, image size, channel order, run id, ...), is
    stored inside the zip as `pokedex.json`, read back by `read_description`.
    """
    if getattr(model, "optimizer", None) is not None:
        # Keras 3 saves a compiled model's optimizer with no way to opt out
        # (clone_model compiles the clone too), so rebuild it from its config.
        bare = type(model).from_config(model.get_config())
        bare.set_weights(model.get_weights())
        model = bare
    with atomic_path(path, suffix=".keras") as temporary:
        model.save(temporary)
        if description is not None:
            embed_description(temporary, description)


def embed_description(path, description):
    """Add `description` (a JSON-able dict) to the .keras zip at `path`, in place."""
    import zipfile

    text = json.dumps(description, indent=2, sort_keys=True) + "\n"
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(DESCRIPTION_MEMBER, text)


def read_description(path):
    """The description `save_model` stored inside a .keras file, or None.

    None for an HDF5 model, a .keras zip without one, or a damaged one. Cheap:
    reads the zip's central directory and one small member, no TensorFlow
    (~0.1 ms on a 35 MB model; `struct` only, as importing zipfile alone takes
    ~5 ms, which classify.py's fast start would pay).
    """
    try:
        raw = _stored_member(path, DESCRIPTION_MEMBER.encode())
        if raw is _UNUSUAL_ZIP:  # Zip64, compression, ...: let the full reader cope
            raw = _member_with_zipfile(path)
        description = None if raw is None else json.loads(raw)
    except (OSError, ValueError, struct.error):
        return None
    return description if isinstance(description, dict) else None


_UNUSUAL_ZIP = object()


def _member_with_zipfile(path):
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo(DESCRIPTION_MEMBER)
            return archive.read(info) if info.file_size <= MAX_DESCRIPTION_BYTES else None
    except (KeyError, zipfile.BadZipFile, EOFError):
        return None


def _stored_member(path, name):
    """Bytes of the uncompressed member `name` of a plain zip, None if absent, or _UNUSUAL_ZIP."""
    with open(path, "rb") as handle:
        if handle.read(4) != ZIP_SIGNATURE:
            return None
        size = handle.seek(0, os.SEEK_END)
        handle.seek(max(0, size - 22 - 65535))  # end record: 22 bytes plus a comment
        tail = handle.read()
        end = tail.rfind(b"PK\x05\x06")
        if end < 0:
            return None
        directory_size, directory_offset = struct.unpack_from("<II", tail, end + 12)
        if directory_offset == 0xFFFFFFFF or directory_offset + directory_size > size:
            return _UNUSUAL_ZIP
        handle.seek(directory_offset)
        directory = handle.read(directory_size)
        position = 0
        while directory[position:position + 4] == b"PK\x01\x02":  # one entry per member
            method, = struct.unpack_from("<H", directory, position + 10)
            stored_size, _, name_size, extra_size, comment_size = struct.unpack_from(
                "<IIHHH", directory, position + 20)
            local_header, = struct.unpack_from("<I", directory, position + 42)
            if directory[position + 46:position + 46 + name_size] == name:
                if method != 0 or 0xFFFFFFFF in (stored_size, local_header):
                    return _UNUSUAL_ZIP
                if stored_size > MAX_DESCRIPTION_BYTES:
                    return None
                handle.seek(local_header + 26)
                local_name, local_extra = struct.unpack("<HH", handle.read(4))
                handle.seek(local_header + 30 + local_name + local_extra)
                return handle.read(stored_size)
            position += 46 + name_size + extra_size + comment_size
    return None


def load_model(path):
    """Load a native .keras zip or a tutorial-era HDF5 model from any file name.

    Keras picks the format from the extension, so the file is linked under a
    name with the right one. safe_mode refuses Lambda layers and other code
    stored in the file.
    """
    import keras

    suffix = {ZIP_SIGNATURE: ".keras", HDF5_SIGNATURE[:4]: ".h5"}.get(_read_head(path, 4))
    if suffix is None:
        raise ArtifactError(f"{path}: not a Keras model file (.keras zip or HDF5)")
    with tempfile.TemporaryDirectory() as folder:
        alias = os.path.join(folder, "model" + suffix)
        os.symlink(os.path.abspath(path), alias)
        try:
            return keras.models.load_model(alias, compile=False, safe_mode=True)
        except Exception as error:  # Keras raises many types; all mean "unusable"
            reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise ArtifactError(
                f"{path}: cannot load model ({type(error).__name__}: {reason[:300]})"
            ) from None


def _read_head(path, size):
    try:
        with open(path, "rb") as handle:
            return handle.read(size)
    except FileNotFoundError:
        raise ArtifactError(f"{path}: file not found") from None
    except OSError as error:
        raise ArtifactError(f"{path}: cannot read ({error.strerror})") from None


def save_label_binarizer(label_binarizer, path):
    """Pickle the fitted LabelBinarizer, as the tutorial's lb.pickle."""
    write_bytes_atomic(path, pickle.dumps(label_binarizer))


# Everything a LabelBinarizer pickle needs, from the tutorial's scikit-learn
# 0.19 era to today, and nothing else.
_ALLOWED_GLOBALS = {
    ("sklearn.preprocessing._label", "LabelBinarizer"),
    ("sklearn.preprocessing.label", "LabelBinarizer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
}


class _LabelBinarizerUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if module == "sklearn.preprocessing.label":  # removed module of old pickles
            module = "sklearn.preprocessing._label"
        return super().find_class(module, name)


def load_label_binarizer(path):
    """Read lb.pickle without executing anything but LabelBinarizer/numpy setup."""
    data = _read_head(path, 64 * 1024 * 1024)
    if data[:4] in (ZIP_SIGNATURE, HDF5_SIGNATURE[:4]):
        raise ArtifactError(f"{path}: is a Keras model, not a label file (give the lb.pickle "
                            "written with it)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # InconsistentVersionWarning on old pickles
            label_binarizer = _LabelBinarizerUnpickler(io.BytesIO(data)).load()
    except pickle.UnpicklingError as error:
        reason = " ".join(str(error).split())  # pickle's messages can span lines
        raise ArtifactError(f"{path}: unsafe or invalid label file ({reason})") from None
    except Exception as error:
        raise ArtifactError(f"{path}: not a label file ({type(error).__name__})") from None
    classes = getattr(label_binarizer, "classes_", None)
    if not isinstance(classes, np.ndarray) or classes.ndim != 1:
        raise ArtifactError(f"{path}: not a fitted LabelBinarizer")
    return label_binarizer


def file_sha256(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def same_file(first, second):
    """Whether two paths name one file: after links and `..`, or as hard links of one file."""
    if os.path.realpath(first) == os.path.realpath(second):
        return True
    try:
        return os.path.samefile(first, second)
    except OSError:  # one does not exist yet
        return False


def first_clash(outputs, inputs=None):
    """The first two (name, path) of `outputs` (and an output and an `inputs` path) that are one file.

    outputs, inputs: {what to call it in a message: path}. Returns None when
    every output has a file of its own.
    """
    named = list(outputs.items())
    for index, (name, path) in enumerate(named):
        for other in named[index + 1:] + list((inputs or {}).items()):
            if same_file(path, other[1]):
                return (name, path), other
    return None


def sidecar_path(model_path, kind):
    """Files that describe a model sit beside it: pokedex.model.labels.json, ..."""
    return f"{model_path}.{kind}.json"
