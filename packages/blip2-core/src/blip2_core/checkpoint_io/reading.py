"""``read_state_dict``: a checkpoint file, a model directory or a sharded index, dispatched to its format's reader."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from .errors import CheckpointError, UntrustedPickleError
from .file_names import DIRECTORY_FILES, PADDLE_SUFFIXES, TORCH_SUFFIXES
from .paddle_pickle import read_paddle
from .safetensors_reader import read_safetensors
from .torch_zip import read_torch

logger = logging.getLogger(__name__)


def read_state_dict(
    path: str | os.PathLike, trust_pickle: bool = False, keep_bfloat16: bool = False, writable: bool = False
) -> dict[str, np.ndarray]:
    """Read a state dict from a checkpoint file or a model directory into numpy arrays.

    ``path`` is a file (``.safetensors``, ``.pth``/``.bin``/``.pt``, ``.pdparams``) or a directory holding one of
    ``model.safetensors``, ``model.safetensors.index.json`` (+ shards), ``pytorch_model.bin``,
    ``pytorch_model.bin.index.json`` (+ shards) or ``model_state.pdparams`` (looked for in that order).
    Pickle formats need ``trust_pickle=True``; they are still read with a restricted unpickler (see the package docs).
    ``keep_bfloat16``: bf16 tensors of safetensors and paddle files come back as ``BFLOAT16_WORDS`` arrays instead
    of float32 ones, for a loader that converts them one at a time (torch pickles are always widened).
    ``writable``: safetensors are mapped copy-on-write, so that their arrays can become tensors without a copy
    (``read_safetensors``).
    """
    path = Path(path)
    if path.is_dir():
        return _read_directory(path, trust_pickle, keep_bfloat16, writable)
    if path.is_file():
        return _read_file(path, trust_pickle, keep_bfloat16, writable)
    raise FileNotFoundError(f"no checkpoint file or directory at {path}")


def checkpoint_files(path: str | os.PathLike) -> list[Path]:
    """The files ``read_state_dict(path)`` reads: ``path`` itself, the checkpoint file of a model directory, or an
    index and its shards."""
    path = Path(path)
    if not path.is_dir():
        return [path]
    for name in DIRECTORY_FILES:
        candidate = path / name
        if not candidate.is_file():
            continue
        if not name.endswith(".index.json"):
            return [candidate]
        try:
            shards = dict.fromkeys(json.loads(candidate.read_text())["weight_map"].values())
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
            return [candidate]
        return [candidate, *(path / Path(shard).name for shard in shards)]
    return []


def _read_directory(directory: Path, trust_pickle: bool, keep_bfloat16: bool, writable: bool) -> dict[str, np.ndarray]:
    for name in DIRECTORY_FILES:
        candidate = directory / name
        if not candidate.is_file():
            continue
        if name.endswith(".index.json"):
            return _read_sharded(candidate, trust_pickle, keep_bfloat16, writable)
        return _read_file(candidate, trust_pickle, keep_bfloat16, writable)
    present = sorted(p.name for p in directory.iterdir())[:20]
    raise CheckpointError(
        f"{directory} holds no checkpoint: looked for {', '.join(DIRECTORY_FILES)}; it contains {present or 'nothing'}"
    )


def _read_file(path: Path, trust_pickle: bool, keep_bfloat16: bool, writable: bool = False) -> dict[str, np.ndarray]:
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return read_safetensors(path, keep_bfloat16, writable)
    if suffix in TORCH_SUFFIXES or suffix in PADDLE_SUFFIXES:
        _check_trust(path, trust_pickle)
        return read_torch(path) if suffix in TORCH_SUFFIXES else read_paddle(path, keep_bfloat16)
    raise CheckpointError(
        f"{path}: unknown checkpoint type {suffix!r}; expected .safetensors, .pth/.bin/.pt (torch) or .pdparams (paddle)"
    )


def _check_trust(path: Path, trust_pickle: bool) -> None:
    if not trust_pickle:
        raise UntrustedPickleError(
            path,
            f"{path} is a pickle file, and loading a pickle from an untrusted source can run code. Name the file "
            f"directly or pass trust_pickle=True to read it (a restricted unpickler is used either way), or convert "
            f"it to safetensors, which needs no trust.",
        )
    logger.warning("%s is a pickle; reading it with a restricted unpickler that only rebuilds arrays", path)


def _read_sharded(index_path: Path, trust_pickle: bool, keep_bfloat16: bool, writable: bool) -> dict[str, np.ndarray]:
    try:
        weight_map = json.loads(index_path.read_text())["weight_map"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise CheckpointError(f"{index_path}: not a shard index with a weight_map ({e})") from None
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
        state_dict.update(_read_file(directory / name, trust_pickle, keep_bfloat16, writable))
    absent = [key for key in weight_map if key not in state_dict]
    if absent:
        raise CheckpointError(
            f"{index_path}: {len(absent)} tensors listed in the index are not in their shards, e.g. {absent[:5]}"
        )
    return state_dict
