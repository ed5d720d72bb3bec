"""Reading paddle pickles (``.pdparams``, as written by ``paddle.save``) without paddle."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .bfloat16 import BFLOAT16_WORDS, bf16_to_float32
from .errors import CheckpointError
from .restricted_unpickler import RestrictedUnpickler, extract_state_dict

_PADDLE_NAME_TABLE = "StructuredToParameterName@@"
_PADDLE_BIG_PARAMS = "UnpackBigParamInfor@@"  # (sic) paddle's key for arrays split to fit protocol 2/3


def read_paddle(path: Path, keep_bfloat16: bool = False) -> dict[str, np.ndarray]:
    """The state dict in a ``paddle.save`` pickle, read with the restricted unpickler (bf16 widened to float32)."""
    with open(path, "rb") as f:
        obj = RestrictedUnpickler(f, path).load()
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
    state_dict = extract_state_dict(arrays, path, lambda v: isinstance(v, np.ndarray) and v.dtype.kind in "biufc")
    # paddle stores bfloat16 as uint16 numpy arrays (and paddle.load reads uint16 back as bfloat16).
    return {k: _bf16(v, keep_bfloat16) if v.dtype == np.uint16 else np.require(v, requirements=["C", "W"])
            for k, v in state_dict.items()}  # fmt: skip


def _bf16(words: np.ndarray, keep: bool) -> np.ndarray:
    return np.ascontiguousarray(words).view(BFLOAT16_WORDS) if keep else bf16_to_float32(words)


def _is_paddle_tensor_tuple(value: Any) -> bool:
    return (
        isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], np.ndarray)
    )
