"""Read a PyTorch state dict saved in the legacy (pre-1.6, non-zip) format, without torch.

Why not `torch.load`: torch is a 2 GB dependency for one file, and unpickling runs
whatever the pickle names. Here the pickles may name only an OrderedDict, the one
function that rebuilds a tensor and the storage types; anything else is refused
before it is called, so a hostile file executes nothing.

The format (torch/serialization.py, `_legacy_save`): five things in a row,
  1. pickle: the magic number 0x1950a86a20f9469cfc6c
  2. pickle: the protocol version, 1001
  3. pickle: a dict of system information (byte order, type sizes)
  4. pickle: the object, here an OrderedDict name -> tensor; each tensor is a call
     `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad,
     backward_hooks)` whose storage is a persistent id
     ('storage', storage type, key, location, element count, view metadata (None))
  5. pickle: the list of storage keys, in the order their bytes follow;
then per key: the element count as int64 little-endian and the raw elements.
"""

import collections
import pickle
import struct

import numpy as np

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

# storage type (torch.<name>) -> little-endian numpy dtype
STORAGE_DTYPES = {
    "DoubleStorage": "<f8", "FloatStorage": "<f4", "HalfStorage": "<f2",
    "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2",
    "CharStorage": "i1", "ByteStorage": "u1", "BoolStorage": "?",
}


class WeightsFileError(ValueError):
    """A weights file that is damaged, truncated or not what it claims: one line."""


class _StorageType:
    """What `find_class("torch", "FloatStorage")` returns: only its dtype matters."""

    def __init__(self, name):
        self.name, self.dtype = name, np.dtype(STORAGE_DTYPES[name])


class _Storage:
    """A storage named by the pickle; its bytes come after the pickles."""

    def __init__(self, storage_type, key, numel):
        self.dtype, self.key, self.numel, self.array = storage_type.dtype, key, numel, None


class _Tensor:
    """A tensor waiting for its storage's bytes (they follow the pickles)."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset = storage, offset
        self.size, self.stride = tuple(size), tuple(stride)

    def to_numpy(self):
        base = self.storage.array
        if not self.size:  # a scalar
            return base[self.offset].copy()
        needed = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride)) + 1
        if min(self.size) > 0 and needed > base.size:
            raise ValueError(f"a tensor of shape {self.size} reaches past its storage of "
                             f"{base.size} elements")
        view = np.lib.stride_tricks.as_strided(
            base[self.offset:], shape=self.size,
            strides=[s * base.itemsize for s in self.stride], writeable=False)
        return np.array(view)  # a contiguous copy that owns its memory


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError("_rebuild_tensor_v2 called without a storage")
    return _Tensor(storage, int(offset), size, stride)


class _SafeUnpickler(pickle.Unpickler):
    """Refuses every global outside the allow-list, so nothing in the file is run."""

    def __init__(self, file, storages):
        super().__init__(file)
        self.storages = storages

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(f"refused to load {module}.{name}: only tensors and "
                                     f"OrderedDict are allowed")

    def persistent_load(self, persistent_id):
        # ('storage', type, key, location, numel[, view metadata]): torch before 1.6
        # writes the sixth item, None unless the tensor is a view of a storage slice
        if (not isinstance(persistent_id, tuple) or len(persistent_id) not in (5, 6)
                or persistent_id[0] != "storage" or not isinstance(persistent_id[1], _StorageType)
                or persistent_id[5:] not in ((), (None,))):
            raise pickle.UnpicklingError(f"unexpected persistent id {persistent_id!r:.80}")
        _, storage_type, key, _location, numel = persistent_id[:5]
        if key not in self.storages:
            self.storages[key] = _Storage(storage_type, key, int(numel))
        return self.storages[key]


def _load_pickle(file, storages):
    return _SafeUnpickler(file, storages).load()


def read_state_dict(path):
    """{name: numpy array} from a legacy-format PyTorch state dict at `path`.

    Raises WeightsFileError (one line naming the file) for a file that is truncated,
    not in this format, or whose pickles name anything but tensors and OrderedDict.
    """
    try:
        with open(path, "rb") as file:
            return _read(file)
    except WeightsFileError as error:
        raise WeightsFileError(f"{path}: {error}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError,
            AttributeError, IndexError, struct.error, MemoryError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise WeightsFileError(f"{path} is not a readable PyTorch legacy state dict "
                               f"({message})") from None


def _read(file):
    storages = {}
    if _load_pickle(file, storages) != MAGIC_NUMBER:
        raise WeightsFileError("not a PyTorch legacy file (wrong magic number; a zip-format "
                               "file from torch >= 1.6 is not supported)")
    version = _load_pickle(file, storages)
    if version != PROTOCOL_VERSION:
        raise WeightsFileError(f"unsupported protocol version {version!r}")
    system = _load_pickle(file, storages)
    if not isinstance(system, dict) or not system.get("little_endian", False):
        raise WeightsFileError("not saved on a little-endian machine")
    state = _load_pickle(file, storages)
    keys = _load_pickle(file, storages)
    if not isinstance(state, dict) or not isinstance(keys, list):
        raise WeightsFileError("holds no state dict")
    for key in keys:
        storage = storages.get(key)
        if storage is None:
            raise WeightsFileError(f"storage {key!r} is listed but no tensor uses it")
        header = file.read(8)
        if len(header) < 8:
            raise WeightsFileError("truncated (a storage's size is missing)")
        (numel,) = struct.unpack("<q", header)
        if numel != storage.numel:
            raise WeightsFileError(f"storage {key!r} holds {numel} elements, "
                                   f"the pickle says {storage.numel}")
        data = file.read(numel * storage.dtype.itemsize)
        if len(data) < numel * storage.dtype.itemsize:
            raise WeightsFileError("truncated (a storage's bytes end early)")
        storage.array = np.frombuffer(data, dtype=storage.dtype)
    if file.read(1):
        raise WeightsFileError("has bytes after the last storage")
    result = {}
    for name, tensor in state.items():
        if not isinstance(tensor, _Tensor):
            raise WeightsFileError(f"entry {name!r} is not a tensor")
        if tensor.storage.array is None:
            raise WeightsFileError(f"the bytes of {name!r} are missing")
        result[name] = tensor.to_numpy()
    return result
