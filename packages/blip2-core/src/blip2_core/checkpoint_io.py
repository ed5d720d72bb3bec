"""Reading and writing state dicts as numpy arrays, without torch or paddle.

Formats read by :func:`read_state_dict`:

- safetensors: a single file, or HF's sharded layout (``model.safetensors.index.json`` + shards);
- torch zip checkpoints (``.pth``/``.bin``/``.pt``, ``pytorch_model.bin`` and its sharded index), including LAVIS's
  ``{"model": state_dict, "optimizer": ..., "config": ..., "epoch": ...}`` files (the inner state dict is returned);
- paddle pickles (``.pdparams``, ``model_state.pdparams``) as written by ``paddle.save``.

bfloat16 tensors come back as float32 (exactly: a bf16 value is the top half of a float32), because numpy has no
bfloat16; every other dtype is kept.

Pickles and trust: torch and paddle checkpoints are pickles, and unpickling an arbitrary file can run arbitrary
code. They are read only when the caller passes ``trust_pickle=True`` (pass it when the user named the file
directly), and even then with a restricted unpickler that can build nothing but containers, numpy arrays and the
handful of torch tensor-rebuild functions, each mapped to numpy code here; any other class in the file is refused
with an error naming it. torch itself is never imported. safetensors files need no trust.
"""

from __future__ import annotations

import collections
import json
import logging
import math
import mmap
import os
import pickle
import re
import struct
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

logger = logging.getLogger(__name__)

SAFETENSORS_NAME = "model.safetensors"
SAFETENSORS_INDEX_NAME = "model.safetensors.index.json"
TORCH_NAME = "pytorch_model.bin"
TORCH_INDEX_NAME = "pytorch_model.bin.index.json"
PADDLE_NAME = "model_state.pdparams"
# Looked for in this order inside a directory: safetensors first, since it needs no trust.
DIRECTORY_FILES = (SAFETENSORS_NAME, SAFETENSORS_INDEX_NAME, TORCH_NAME, TORCH_INDEX_NAME, PADDLE_NAME)

TORCH_SUFFIXES = (".pth", ".bin", ".pt")
PADDLE_SUFFIXES = (".pdparams",)


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, or in a form this module does not read; the message names the file."""


class UntrustedPickleError(CheckpointError):
    """A pickle checkpoint was met without ``trust_pickle=True``."""


class UnsafePickleError(CheckpointError, pickle.UnpicklingError):
    """A pickle checkpoint refers to a class the restricted unpickler does not allow; the message names it."""


# --------------------------------------------------------------------------------------------------------------
# Public entry points


def read_state_dict(path: str | os.PathLike, trust_pickle: bool = False) -> dict[str, np.ndarray]:
    """Read a state dict from a checkpoint file or a model directory into numpy arrays.

    ``path`` is a file (``.safetensors``, ``.pth``/``.bin``/``.pt``, ``.pdparams``) or a directory holding one of
    ``model.safetensors``, ``model.safetensors.index.json`` (+ shards), ``pytorch_model.bin``,
    ``pytorch_model.bin.index.json`` (+ shards) or ``model_state.pdparams`` (looked for in that order).
    Pickle formats need ``trust_pickle=True``; they are still read with a restricted unpickler (see module docs).
    """
    path = Path(path)
    if path.is_dir():
        return _read_directory(path, trust_pickle)
    if path.is_file():
        return _read_file(path, trust_pickle)
    raise FileNotFoundError(f"no checkpoint file or directory at {path}")


def write_safetensors(
    state_dict: Mapping[str, np.ndarray],
    directory: str | os.PathLike,
    max_shard_size: int | str = "5GB",
    metadata: Mapping[str, str] | None = None,
) -> list[Path]:
    """Write ``state_dict`` into ``directory`` in HF's layout; return the files written.

    One ``model.safetensors`` when the tensors fit in ``max_shard_size`` (bytes, or a string like ``"5GB"`` /
    ``"500MiB"``), else shards ``model-00001-of-0000N.safetensors`` plus ``model.safetensors.index.json``. A
    tensor larger than the limit gets a shard of its own. Earlier files of either layout in ``directory`` are
    removed first, so a loader cannot pick up a stale one. ``metadata`` is stored in each file's header; by
    default there is none, which both HF transformers and PaddleNLP accept (each rejects the other's
    ``format`` tag).
    """
    from safetensors.numpy import save_file

    limit = parse_size(max_shard_size)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {name: _writable_array(name, value) for name, value in state_dict.items()}

    shards: list[dict[str, np.ndarray]] = [{}]
    shard_bytes = 0
    for name, array in arrays.items():
        if shards[-1] and shard_bytes + array.nbytes > limit:
            shards.append({})
            shard_bytes = 0
        shards[-1][name] = array
        shard_bytes += array.nbytes

    for stale in [directory / SAFETENSORS_NAME, directory / SAFETENSORS_INDEX_NAME, *_shard_files(directory)]:
        stale.unlink(missing_ok=True)

    header_metadata = dict(metadata) if metadata is not None else None
    if len(shards) == 1:
        target = directory / SAFETENSORS_NAME
        _atomic_save(save_file, shards[0], target, header_metadata)
        return [target]

    written = []
    weight_map = {}
    for number, shard in enumerate(shards, start=1):
        target = directory / f"model-{number:05d}-of-{len(shards):05d}.safetensors"
        _atomic_save(save_file, shard, target, header_metadata)
        weight_map.update(dict.fromkeys(shard, target.name))
        written.append(target)
    index = {"metadata": {"total_size": sum(a.nbytes for a in arrays.values())}, "weight_map": weight_map}
    index_path = directory / SAFETENSORS_INDEX_NAME
    tmp = index_path.with_name(index_path.name + ".tmp")
    tmp.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, index_path)
    return [*written, index_path]


_SIZE_UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}


def parse_size(size: int | str) -> int:
    """Bytes in ``size``: an int, or a string like ``"5GB"`` (decimal, as HF uses) or ``"4GiB"`` (binary)."""
    if isinstance(size, int):
        value = size
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(size))
        if not match or match.group(2).upper() not in _SIZE_UNITS:
            raise ValueError(f"cannot read a size from {size!r}; use bytes or e.g. '5GB', '500MiB'")
        value = int(float(match.group(1)) * _SIZE_UNITS[match.group(2).upper()])
    if value <= 0:
        raise ValueError(f"max_shard_size must be positive, got {size!r}")
    return value


# --------------------------------------------------------------------------------------------------------------
# Dispatch


def _read_directory(directory: Path, trust_pickle: bool) -> dict[str, np.ndarray]:
    for name in DIRECTORY_FILES:
        candidate = directory / name
        if not candidate.is_file():
            continue
        if name.endswith(".index.json"):
            return _read_sharded(candidate, trust_pickle)
        return _read_file(candidate, trust_pickle)
    present = sorted(p.name for p in directory.iterdir())[:20]
    raise CheckpointError(
        f"{directory} holds no checkpoint: looked for {', '.join(DIRECTORY_FILES)}; it contains {present or 'nothing'}"
    )


def _read_file(path: Path, trust_pickle: bool) -> dict[str, np.ndarray]:
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return read_safetensors(path)
    if suffix in TORCH_SUFFIXES or suffix in PADDLE_SUFFIXES:
        _check_trust(path, trust_pickle)
        return _read_torch(path) if suffix in TORCH_SUFFIXES else _read_paddle(path)
    raise CheckpointError(
        f"{path}: unknown checkpoint type {suffix!r}; expected .safetensors, .pth/.bin/.pt (torch) or .pdparams (paddle)"
    )


def _check_trust(path: Path, trust_pickle: bool) -> None:
    if not trust_pickle:
        raise UntrustedPickleError(
            f"{path} is a pickle file, and loading a pickle from an untrusted source can run code. Name the file "
            f"directly or pass trust_pickle=True to read it (a restricted unpickler is used either way), or convert "
            f"it to safetensors, which needs no trust."
        )
    logger.warning("%s is a pickle; reading it with a restricted unpickler that only rebuilds arrays", path)


def _read_sharded(index_path: Path, trust_pickle: bool) -> dict[str, np.ndarray]:
    try:
        weight_map = json.loads(index_path.read_text())["weight_map"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise CheckpointError(f"{index_path}: not a shard index with a weight_map ({e})") from e
    directory = index_path.parent
    shard_names = list(dict.fromkeys(weight_map.values()))
    for name in shard_names:
        # A shard must be a file next to the index: an index must not point elsewhere on the disk.
        if Path(name).name != name:
            raise CheckpointError(f"{index_path}: shard name {name!r} is not a plain file name")
    missing = [name for name in shard_names if not (directory / name).is_file()]
    if missing:
        raise CheckpointError(f"{index_path}: shard files missing from {directory}: {', '.join(missing)}")
    state_dict: dict[str, np.ndarray] = {}
    for name in shard_names:
        state_dict.update(_read_file(directory / name, trust_pickle))
    absent = [key for key in weight_map if key not in state_dict]
    if absent:
        raise CheckpointError(
            f"{index_path}: {len(absent)} tensors listed in the index are not in their shards, e.g. {absent[:5]}"
        )
    return state_dict


# --------------------------------------------------------------------------------------------------------------
# safetensors

_SAFETENSORS_DTYPES = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "BF16": "<u2",  # widened to float32 after reading
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U64": "<u8",
    "U32": "<u4",
    "U16": "<u2",
    "U8": "u1",
    "BOOL": "?",
    "C64": "<c8",
}
_MAX_HEADER_BYTES = 100 * 2**20


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a ``.safetensors`` file into numpy arrays (bf16 widened to float32); no trust needed.

    The file is memory-mapped: a tensor's bytes are read when it is used, so loading a 15 GB checkpoint
    into a model does not hold a second 15 GB copy. Parsed here rather than with ``safetensors.numpy``,
    which refuses bf16.
    """
    path = Path(path)
    file_size = path.stat().st_size
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise CheckpointError(f"{path}: too short to be a safetensors file")
        (header_size,) = struct.unpack("<Q", prefix)
        if header_size > min(_MAX_HEADER_BYTES, file_size - 8):
            raise CheckpointError(f"{path}: not a safetensors file (header size {header_size})")
        try:
            header = json.loads(f.read(header_size))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{path}: not a safetensors file (bad header: {e})") from e
        data_start = 8 + header_size
        # the arrays keep the mapping alive; it outlives the file object
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if file_size > data_start else b""
    state_dict = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        state_dict[name] = _read_safetensors_tensor(mapped, path, name, info, data_start, file_size)
    return state_dict


def _read_safetensors_tensor(
    mapped: Any, path: Path, name: str, info: Any, data_start: int, file_size: int
) -> np.ndarray:
    try:
        dtype_name, shape, (begin, end) = info["dtype"], [int(d) for d in info["shape"]], info["data_offsets"]
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: bad header entry for {name!r}: {info!r}") from e
    if dtype_name not in _SAFETENSORS_DTYPES:
        raise CheckpointError(f"{path}: tensor {name!r} has dtype {dtype_name}, which numpy cannot hold")
    dtype = np.dtype(_SAFETENSORS_DTYPES[dtype_name])
    count = math.prod(shape)
    if end - begin != count * dtype.itemsize or begin < 0 or data_start + end > file_size:
        raise CheckpointError(f"{path}: tensor {name!r} offsets {begin}..{end} do not fit shape {shape} {dtype_name}")
    if count == 0:
        return np.empty(shape, dtype=dtype.newbyteorder("="))
    array = np.frombuffer(mapped, dtype=dtype, count=count, offset=data_start + begin).reshape(shape)
    array = array.astype(dtype.newbyteorder("="), copy=False)
    return _bf16_to_float32(array) if dtype_name == "BF16" else array


def _bf16_to_float32(raw: np.ndarray) -> np.ndarray:
    # bf16 is the high 16 bits of a float32: widening is exact.
    return (raw.astype(np.uint32) << 16).view(np.float32)


def _writable_array(name: str, value: Any) -> np.ndarray:
    if not isinstance(name, str):
        raise TypeError(f"state dict keys must be strings, got {name!r}")
    array = np.asarray(value)
    if array.dtype.kind not in "biufc":
        raise TypeError(f"{name}: cannot write dtype {array.dtype} to safetensors")
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    # save_file writes the raw buffer, so views must be compacted; np.require keeps 0-d arrays 0-d.
    return np.require(array, requirements="C")


def _shard_files(directory: Path) -> Iterable[Path]:
    return (
        p for p in directory.glob("model-*-of-*.safetensors") if re.fullmatch(r"model-\d+-of-\d+\.safetensors", p.name)
    )


def _atomic_save(save_file: Any, tensors: dict[str, np.ndarray], target: Path, metadata: dict | None) -> None:
    tmp = target.with_name(target.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, target)


# --------------------------------------------------------------------------------------------------------------
# torch zip checkpoints, without torch


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


def _no_op_constructor(*_args: Any) -> None:
    return None


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
# Shared with the paddle reader: containers and numpy's own array pickling.
_COMMON_CALLABLES = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "tuple"): tuple,
    ("__builtin__", "tuple"): tuple,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("_codecs", "encode"): None,  # filled below: protocol-2 pickles carry bytes as latin-1 text
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): None,
    ("numpy._core.multiarray", "_reconstruct"): None,
    ("numpy.core.multiarray", "scalar"): None,
    ("numpy._core.multiarray", "scalar"): None,
}


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    if encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return text.encode("latin1")


def _numpy_reconstruct(subtype: Any, shape: Any, dtype_code: Any) -> np.ndarray:
    if subtype is not np.ndarray:
        raise UnsafePickleError(f"numpy _reconstruct of {subtype!r} is not allowed")
    return np.ndarray.__new__(np.ndarray, shape, dtype_code)


def _numpy_scalar(dtype: Any, data: Any = None) -> Any:
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes):
        raise UnsafePickleError(f"numpy scalar of {dtype!r} is not allowed")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


_COMMON_CALLABLES.update(
    {
        ("_codecs", "encode"): _latin1_encode,
        ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
        ("numpy.core.multiarray", "scalar"): _numpy_scalar,
        ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    }
)


class _RestrictedUnpickler(pickle.Unpickler):
    """Builds only what a state dict needs; refuses every other class by name."""

    def __init__(self, file: BinaryIO, source: Path, allow_torch: bool) -> None:
        super().__init__(file, encoding="latin1")
        self.source = source
        self.allow_torch = allow_torch

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _COMMON_CALLABLES:
            return _COMMON_CALLABLES[module, name]
        if self.allow_torch:
            if (module, name) in _TORCH_CALLABLES:
                return _TORCH_CALLABLES[module, name]
            if (module, name) in _TYPE_MARKERS:
                return _TypeMarker(f"{module}.{name}")
            if module == "torch" and name in _TORCH_STORAGES:
                return _TORCH_DTYPES[_TORCH_STORAGES[name]]
            if module == "torch" and _TORCH_DTYPE_ALIASES.get(name, name) in _TORCH_DTYPES:
                return _TORCH_DTYPES[_TORCH_DTYPE_ALIASES.get(name, name)]
        raise UnsafePickleError(
            f"{self.source}: the pickle refers to {module}.{name}, which the restricted unpickler does not allow "
            f"(it builds only containers, numpy arrays and tensors); convert the checkpoint to safetensors in the "
            f"environment that wrote it"
        )

    def persistent_load(self, pid: Any) -> Any:
        if not self.allow_torch:
            raise UnsafePickleError(f"{self.source}: unexpected persistent id {pid!r}")
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise CheckpointError(f"{self.source}: unsupported persistent id {pid!r} (not a torch storage)")
        _, storage_type, key, _location, numel = pid
        if isinstance(storage_type, _TypeMarker):  # an untyped storage: raw bytes
            storage_type = _TORCH_DTYPES["uint8"]
        if not isinstance(storage_type, _TorchDType) or not isinstance(numel, int) or numel < 0:
            raise CheckpointError(f"{self.source}: bad storage {pid!r}")
        return _StorageRef(str(key), storage_type, numel)


_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def _read_torch(path: Path) -> dict[str, np.ndarray]:
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
            obj = _RestrictedUnpickler(f, path, allow_torch=True).load()
        lazy = _extract_state_dict(obj, path, lambda v: isinstance(v, _LazyTensor))
        return _materialize(archive, prefix, byteorder, lazy, path)


def _legacy_torch_message(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(16)
    legacy = False
    try:
        legacy = head[:2] == b"\x80\x02" and pickle.loads(head[: head.index(b".") + 1]) == _TORCH_LEGACY_MAGIC
    except Exception:  # not a pickle at all: the message below still applies
        pass
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
    return _bf16_to_float32(array) if tensor.dtype.bf16 else array


def _extract_state_dict(obj: Any, path: Path, is_tensor: Any) -> dict[str, Any]:
    """The state dict inside ``obj``: ``obj`` itself, or LAVIS's ``obj["model"]`` (also ``"state_dict"``)."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a state dict")
    for wrapper_key in ("model", "state_dict"):
        inner = obj.get(wrapper_key)
        if isinstance(inner, Mapping) and any(is_tensor(v) for v in inner.values()):
            others = sorted(str(k) for k in obj if k != wrapper_key)
            logger.info("%s: using the state dict under %r (ignoring %s)", path, wrapper_key, others)
            obj = inner
            break
    tensors = {k: v for k, v in obj.items() if is_tensor(v)}
    if not tensors:
        raise CheckpointError(f"{path}: no tensors found (top-level keys: {sorted(map(str, obj))[:10]})")
    skipped = [str(k) for k in obj if k not in tensors]
    if skipped:
        logger.warning("%s: ignoring %d entries that are not tensors: %s", path, len(skipped), skipped[:10])
    bad_keys = [k for k in tensors if not isinstance(k, str)]
    if bad_keys:
        raise CheckpointError(f"{path}: state dict keys must be strings, got {bad_keys[:5]}")
    return tensors


# --------------------------------------------------------------------------------------------------------------
# paddle pickles

_PADDLE_NAME_TABLE = "StructuredToParameterName@@"
_PADDLE_BIG_PARAMS = "UnpackBigParamInfor@@"  # (sic) paddle's key for arrays split to fit protocol 2/3


def _read_paddle(path: Path) -> dict[str, np.ndarray]:
    with open(path, "rb") as f:
        obj = _RestrictedUnpickler(f, path, allow_torch=False).load()
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a state dict")
    obj = dict(obj)
    obj.pop(_PADDLE_NAME_TABLE, None)
    big_params = obj.pop(_PADDLE_BIG_PARAMS, None) or {}
    # paddle.save writes each tensor as a (name, ndarray) tuple; plain numpy values stay arrays.
    arrays = {k: v[1] if _is_paddle_tensor_tuple(v) else v for k, v in obj.items()}
    for key, info in big_params.items():
        try:
            parts = [np.asarray(arrays.pop(part)).reshape(-1) for part in info["slices"]]
            arrays[key] = np.concatenate(parts).reshape(info["OriginShape"])
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{path}: cannot reassemble split parameter {key!r}: {e}") from e
    state_dict = _extract_state_dict(arrays, path, lambda v: isinstance(v, np.ndarray) and v.dtype.kind in "biufc")
    # paddle stores bfloat16 as uint16 numpy arrays (and paddle.load reads uint16 back as bfloat16).
    return {
        k: _bf16_to_float32(v) if v.dtype == np.uint16 else np.require(v, requirements=["C", "W"])
        for k, v in state_dict.items()
    }


def _is_paddle_tensor_tuple(value: Any) -> bool:
    return (
        isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], np.ndarray)
    )
