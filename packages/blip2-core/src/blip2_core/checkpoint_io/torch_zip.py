"""Reading torch zip checkpoints (``.pth``/``.bin``/``.pt``, torch >= 1.6) into numpy arrays, without torch.

The pickle inside the zip is read with the restricted unpickler, extended here with the handful of torch
tensor-rebuild functions, each mapped to numpy code; torch itself is never imported. Tensors are recorded
lazily while unpickling and their bytes read from the archive only for what ends up in the state dict.
"""

from __future__ import annotations

import collections
import math
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .bfloat16 import bf16_to_float32
from .errors import CheckpointError, UnsafePickleError
from .restricted_unpickler import RestrictedUnpickler, extract_state_dict


@dataclass(frozen=True)
class _TorchDType:
    """A torch element type, as met in a pickle (storage class or dtype object)."""

    name: str
    numpy: str  # little-endian numpy dtype of the raw data
    bf16: bool = False


_TORCH_DTYPES = {
    "float64": _TorchDType("float64", "<f8"),
    "float32": _TorchDType("float32", "<f4"),
    "float16": _TorchDType("float16", "<f2"),
    "bfloat16": _TorchDType("bfloat16", "<u2", bf16=True),
    "int64": _TorchDType("int64", "<i8"),
    "int32": _TorchDType("int32", "<i4"),
    "int16": _TorchDType("int16", "<i2"),
    "int8": _TorchDType("int8", "i1"),
    "uint8": _TorchDType("uint8", "u1"),
    "uint16": _TorchDType("uint16", "<u2"),
    "uint32": _TorchDType("uint32", "<u4"),
    "uint64": _TorchDType("uint64", "<u8"),
    "bool": _TorchDType("bool", "?"),
    "complex64": _TorchDType("complex64", "<c8"),
    "complex128": _TorchDType("complex128", "<c16"),
}
# torch also exposes these dtypes under older names.
_TORCH_DTYPE_ALIASES = {
    "double": "float64",
    "float": "float32",
    "half": "float16",
    "long": "int64",
    "int": "int32",
    "short": "int16",
    "cfloat": "complex64",
    "cdouble": "complex128",
}
_TORCH_STORAGES = {
    "DoubleStorage": "float64",
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
    "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128",
}


@dataclass(frozen=True)
class _StorageRef:
    key: str
    dtype: _TorchDType
    numel: int


@dataclass(frozen=True)
class _LazyTensor:
    """A tensor found while unpickling; its bytes are read only if it ends up in the returned state dict."""

    storage: _StorageRef
    dtype: _TorchDType
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


class _TypeMarker:
    """Stands in for a class (torch.Tensor, Parameter) that a pickle passes around but never calls."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


def _ints(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or not all(isinstance(v, int) and v >= 0 for v in value):
        raise CheckpointError(f"bad tensor {what} {value!r} in the pickle")
    return tuple(value)


def _rebuild_tensor_v2(storage: Any, offset: Any, size: Any, stride: Any, *_ignored: Any) -> _LazyTensor:
    if not isinstance(storage, _StorageRef) or not isinstance(offset, int) or offset < 0:
        raise CheckpointError(f"bad tensor storage {storage!r} / offset {offset!r} in the pickle")
    return _LazyTensor(storage, storage.dtype, offset, _ints(size, "size"), _ints(stride, "stride"))


def _rebuild_tensor_v3(
    storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any, hooks: Any, dtype: Any, *_ignored: Any
) -> _LazyTensor:
    # v3 stores dtypes without a typed storage class (uint16/32/64): an untyped byte storage plus the dtype.
    if not isinstance(dtype, _TorchDType):
        raise CheckpointError(f"bad tensor dtype {dtype!r} in the pickle")
    tensor = _rebuild_tensor_v2(storage, offset, size, stride)
    return _LazyTensor(tensor.storage, dtype, tensor.offset, tensor.size, tensor.stride)


def _rebuild_parameter(data: Any, *_ignored: Any) -> Any:
    return data


def _rebuild_from_type_v2(func: Any, new_type: Any, args: Any, state: Any) -> Any:
    # Tensor subclasses / tensors with attributes: only our own rebuild functions may be called back.
    if func not in (_rebuild_tensor_v2, _rebuild_tensor_v3, _rebuild_parameter):
        raise UnsafePickleError(f"_rebuild_from_type_v2 with {func!r} is not allowed")
    return func(*args)


_TORCH_CALLABLES = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch", "Size"): tuple,
    ("torch", "device"): lambda *parts: ":".join(map(str, parts)),
}
_TYPE_MARKERS = {
    ("torch", "Tensor"),
    ("torch._tensor", "Tensor"),
    ("torch.nn.parameter", "Parameter"),
    ("torch.storage", "UntypedStorage"),
    ("torch", "UntypedStorage"),
}


class _TorchUnpickler(RestrictedUnpickler):
    """The restricted unpickler plus torch's tensor rebuilds and storages, each mapped to numpy code."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _TORCH_CALLABLES:
            return _TORCH_CALLABLES[module, name]
        if (module, name) in _TYPE_MARKERS:
            return _TypeMarker(f"{module}.{name}")
        if module == "torch" and name in _TORCH_STORAGES:
            return _TORCH_DTYPES[_TORCH_STORAGES[name]]
        if module == "torch" and _TORCH_DTYPE_ALIASES.get(name, name) in _TORCH_DTYPES:
            return _TORCH_DTYPES[_TORCH_DTYPE_ALIASES.get(name, name)]
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise CheckpointError(f"{self.source}: unsupported persistent id {pid!r} (not a torch storage)")
        _, storage_type, key, _location, numel = pid
        if isinstance(storage_type, _TypeMarker):  # an untyped storage: raw bytes
            storage_type = _TORCH_DTYPES["uint8"]
        if not isinstance(storage_type, _TorchDType) or not isinstance(numel, int) or numel < 0:
            raise CheckpointError(f"{self.source}: bad storage {pid!r}")
        return _StorageRef(str(key), storage_type, numel)


_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def read_torch(path: Path) -> dict[str, np.ndarray]:
    """The state dict in a torch zip checkpoint (LAVIS's ``{"model": ...}`` unwrapped), bf16 widened to float32."""
    if not zipfile.is_zipfile(path):
        raise CheckpointError(_legacy_torch_message(path))
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise CheckpointError(f"{path}: a zip file, but not a torch checkpoint (no single data.pkl)")
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = "little"
        if prefix + "byteorder" in archive.namelist():
            byteorder = archive.read(prefix + "byteorder").decode().strip()
        with archive.open(pickles[0]) as f:
            obj = _TorchUnpickler(f, path).load()
        lazy = extract_state_dict(obj, path, lambda v: isinstance(v, _LazyTensor))
        return _materialize(archive, prefix, byteorder, lazy, path)


def _legacy_torch_message(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(16)
    # compared as bytes: even 16 bytes of an untrusted file are never unpickled
    legacy = head.startswith(pickle.dumps(_TORCH_LEGACY_MAGIC, protocol=2))
    what = "a legacy (pre-1.6, non-zip) torch checkpoint" if legacy else "not a torch zip checkpoint"
    return (
        f"{path} is {what}. Re-save it with a recent torch: "
        f"torch.save(torch.load(path, map_location='cpu'), new_path), or convert it to safetensors"
    )


def _materialize(
    archive: zipfile.ZipFile, prefix: str, byteorder: str, lazy: dict[str, _LazyTensor], path: Path
) -> dict[str, np.ndarray]:
    if byteorder not in ("little", "big"):
        raise CheckpointError(f"{path}: unknown byteorder {byteorder!r}")
    by_storage: dict[str, list[str]] = collections.defaultdict(list)
    for name, tensor in lazy.items():
        by_storage[tensor.storage.key].append(name)
    result: dict[str, np.ndarray] = {}
    # One storage in memory at a time; tensors sharing a storage (tied weights, views) read it once.
    for key, names in by_storage.items():
        member = f"{prefix}data/{key}"
        try:
            raw = archive.read(member)
        except KeyError:
            raise CheckpointError(f"{path}: storage {member} is missing from the archive") from None
        for name in names:
            result[name] = _tensor_from_storage(raw, lazy[name], byteorder, path, name)
        del raw
    return {name: result[name] for name in lazy}


def _tensor_from_storage(raw: bytes, tensor: _LazyTensor, byteorder: str, path: Path, name: str) -> np.ndarray:
    dtype = np.dtype(tensor.dtype.numpy)
    if byteorder == "big":
        dtype = dtype.newbyteorder(">")
    available = len(raw) // dtype.itemsize
    if len(tensor.size) != len(tensor.stride):
        raise CheckpointError(f"{path}: tensor {name!r} has size {tensor.size} but stride {tensor.stride}")
    count = math.prod(tensor.size)
    # Bounds check before as_strided, which would otherwise read past the buffer of a malformed file.
    last = tensor.offset + sum((s - 1) * st for s, st in zip(tensor.size, tensor.stride)) if count else 0
    if count and last >= available:
        raise CheckpointError(
            f"{path}: tensor {name!r} (offset {tensor.offset}, size {tensor.size}, stride {tensor.stride}) "
            f"reaches past its storage of {available} elements"
        )
    flat = np.frombuffer(raw, dtype=dtype, count=available)
    if count:
        view = np.lib.stride_tricks.as_strided(
            flat[tensor.offset :], shape=tensor.size, strides=[st * dtype.itemsize for st in tensor.stride]
        )
    else:
        view = np.empty(tensor.size, dtype=dtype)
    array = np.array(view, dtype=dtype.newbyteorder("="), order="C", copy=True)
    return bf16_to_float32(array) if tensor.dtype.bf16 else array
