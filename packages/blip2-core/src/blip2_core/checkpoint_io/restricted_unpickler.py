"""An unpickler that builds only what a state dict is made of, and the state dict inside what it built.

Torch and paddle checkpoints are pickles, and unpickling an arbitrary file can run arbitrary code. This
unpickler can build nothing but containers and numpy arrays (the torch reader adds its tensor-rebuild
functions, each mapped to numpy code); any other class in the file is refused with an error naming it.
"""

from __future__ import annotations

import collections
import logging
import pickle
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .errors import CheckpointError, UnsafePickleError

logger = logging.getLogger(__name__)


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    # protocol-2 pickles carry bytes as latin-1 text
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


# Containers and numpy's own array pickling: what torch and paddle checkpoints both hold.
_COMMON_CALLABLES = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "tuple"): tuple,
    ("__builtin__", "tuple"): tuple,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("_codecs", "encode"): _latin1_encode,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Builds only containers and numpy arrays; refuses every other class by name.

    A reader that needs more (torch's tensor rebuilds) subclasses it and answers those names in
    :meth:`find_class` before deferring here.
    """

    def __init__(self, file: BinaryIO, source: Path) -> None:
        super().__init__(file, encoding="latin1")
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _COMMON_CALLABLES:
            return _COMMON_CALLABLES[module, name]
        raise UnsafePickleError(
            f"{self.source}: the pickle refers to {module}.{name}, which the restricted unpickler does not allow "
            f"(it builds only containers, numpy arrays and tensors); convert the checkpoint to safetensors in the "
            f"environment that wrote it"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self.source}: unexpected persistent id {pid!r}")


def extract_state_dict(obj: Any, path: Path, is_tensor: Callable[[Any], bool]) -> dict[str, Any]:
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
