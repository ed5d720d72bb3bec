"""The converted-weights cache: what a checkpoint needs converted before CPU parameters can take it, converted once
and kept on disk in the layout the model reads, so that every later load memory-maps it and copies nothing.

A CPU parameter takes a checkpoint array's memory as it is when the array is C-contiguous, 64-byte aligned and of
the parameter's dtype (``blip2_encoder_common.weights.is_shareable``; the readers map safetensors copy-on-write).
What is not, e.g. HF's Linear weights ([out, in], paddle's are [in, out]), its fused qkv split per head, a bf16 or
fp16 checkpoint going into float32 parameters, a tensor at an unaligned offset, or anything read from a pickle, is
written here on the first load, one tensor at a time (never two copies of the model in memory, only ever one
converted tensor), into ``$BLIP2_HOME/weights/<key>.safetensors`` (``~/.cache/blip2/weights`` by default), and read
back memory-mapped from then on.

The key covers the checkpoint files (path, size, modification time and a hash of their header), the names, shapes
and dtypes of the converted tensors, and the code that converts them (the layout modules and readers): a file
that changes, or a converter that does, gives a new key; the entry for the same files' older state is deleted
when the new one is written. The folder can be deleted at any time. ``BLIP2_WEIGHTS_CACHE=0`` turns the cache
off (every load then converts in memory, as the first one does); where the folder cannot be written, loading
converts in memory too, with a warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from blip2_encoder_common import in_dtype
from blip2_encoder_common.weights import aligned_copy, is_shareable

from ..checkpoint_io import read_safetensors, write_aligned_safetensors

logger = logging.getLogger(__name__)

FORMAT = 1  # bumped when what an entry holds changes
ENV_SWITCH = "BLIP2_WEIGHTS_CACHE"
_HEADER_BYTES = 1 << 20  # a pickle's identity: its first and last MiB (a safetensors file's: its whole header)


def cache_dir() -> Path:
    """``$BLIP2_HOME/weights``."""
    from blip2_data.download import blip2_home

    return blip2_home() / "weights"


def enabled() -> bool:
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


def mappable_weights(
    weights: dict[str, np.ndarray], targets: Mapping[str, str], files: Iterable[Path], recipe: Mapping[str, object]
) -> dict[str, np.ndarray]:
    """``weights``, with every array that a parameter cannot take as it is (``targets``: its dtype by name) replaced
    by the same values from the cache, memory-mapped; the cache entry is written first where there is none.

    ``files``: the checkpoint files the arrays come from; ``recipe``: anything else the conversion depended on.
    The arrays replaced are dropped from ``weights`` as they are written, so that their memory (or mapped pages)
    goes before the next one is converted. Returns ``weights`` unchanged where the cache is off; raises
    ``CacheUnwritable`` where the entry cannot be written (the caller reads the checkpoint again and converts in
    memory)."""
    pending = [(k, tuple(v.shape), t) for k, v in weights.items() if (t := targets.get(k)) and _needs_cache(v, t)]
    if not pending or not enabled():
        return weights
    sources = [_identity(Path(f)) for f in files]
    key = _key(sources, pending, recipe)
    directory = cache_dir()
    entry = directory / f"{key}.safetensors"
    cached = _read_entry(entry, pending)
    if cached is None:
        try:
            cached = _write_entry(directory, entry, weights, pending, sources, recipe)
        except OSError as error:
            raise CacheUnwritable(f"cannot write the converted-weights cache in {directory} ({error})") from error
    weights.update(cached)
    return weights


class CacheUnwritable(OSError):
    """The cache entry could not be written; ``weights`` lost the arrays converted so far: read them again."""


_CONVERTIBLE = ("float16", "float32", "float64", "int8", "uint8", "int16", "int32", "int64")  # what numpy can hold


def for_model(
    model: Any, weights: dict[str, np.ndarray], files: Iterable[Path], recipe: Mapping[str, object], reconvert: Any
) -> dict[str, np.ndarray]:
    """``mappable_weights`` for the parameters of ``model``; ``reconvert()`` reads and converts the checkpoint again,
    in memory, where the cache cannot be written."""
    params = model.state_dict()
    if any(key in params and value.size != 1 and tuple(value.shape) != tuple(params[key].shape)
           for key, value in weights.items()):  # fmt: skip
        return weights  # the wrong checkpoint for this config: assign_weights says so, before anything is converted
    targets = {key: str(param.dtype).replace("paddle.", "") for key, param in params.items()}
    try:
        return mappable_weights(weights, targets, files, recipe)
    except CacheUnwritable as error:
        logger.warning("%s: converting the weights in memory", error)
        return reconvert()


def _needs_cache(value: np.ndarray, dtype: str) -> bool:
    return dtype in _CONVERTIBLE and value.size > 0 and not is_shareable(value, dtype)


def _identity(path: Path) -> dict[str, object]:
    """A file as the key sees it: where it is, its size and time, and a hash of its header."""
    resolved = path.resolve()
    stat = resolved.stat()
    digest = hashlib.sha256()
    with open(resolved, "rb") as f:
        prefix = f.read(8)
        digest.update(prefix)
        header_size = int.from_bytes(prefix, "little") if len(prefix) == 8 else 0
        if resolved.suffix == ".safetensors" and 0 < header_size < 100 * 2**20:
            digest.update(f.read(header_size))
        else:
            digest.update(f.read(_HEADER_BYTES))
            f.seek(max(stat.st_size - _HEADER_BYTES, 0))
            digest.update(f.read(_HEADER_BYTES))
    return {"path": str(resolved), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "header": digest.hexdigest()}


def _key(sources: list[dict[str, object]], pending: list[tuple[str, tuple[int, ...], str]], recipe: Mapping) -> str:
    described = json.dumps(
        {"format": FORMAT, "code": _code_fingerprint(), "sources": sources, "tensors": pending, "recipe": recipe},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(described.encode()).hexdigest()[:32]


_code_digest: str | None = None


def _code_fingerprint() -> str:
    """A hash of the code that reads and converts checkpoints: a changed converter never reuses an old entry."""
    global _code_digest
    if _code_digest is None:
        import blip2_encoder_common.weights
        import blip2_eva_vit.formats
        import blip2_eva_vit.loading
        import blip2_qformer.formats

        from .. import checkpoint_io, formats

        files: list[Path] = []
        for module in (formats, checkpoint_io, blip2_eva_vit.formats, blip2_qformer.formats):
            files += sorted(Path(module.__file__).parent.glob("*.py"))
        files += [Path(blip2_eva_vit.loading.__file__), Path(blip2_encoder_common.weights.__file__)]
        digest = hashlib.sha256()
        for file in files:
            digest.update(file.name.encode() + file.read_bytes())
        _code_digest = digest.hexdigest()
    return _code_digest


def _read_entry(entry: Path, pending: list[tuple[str, tuple[int, ...], str]]) -> dict[str, np.ndarray] | None:
    """The entry's arrays (copy-on-write mappings), or None where there is none or it does not hold them all."""
    if not entry.is_file():
        return None
    try:
        arrays = read_safetensors(entry, writable=True)
    except (OSError, ValueError) as error:  # CheckpointError is a ValueError
        logger.warning("converted-weights cache entry %s is unreadable (%s): writing it again", entry, error)
        return None
    for name, shape, dtype in pending:
        array = arrays.get(name)
        if array is None or tuple(array.shape) != shape or array.dtype != np.dtype(dtype):
            logger.warning("converted-weights cache entry %s lacks %s as expected: writing it again", entry, name)
            return None
    return {name: arrays[name] for name, _, _ in pending}


def _write_entry(
    directory: Path,
    entry: Path,
    weights: dict[str, np.ndarray],
    pending: list[tuple[str, tuple[int, ...], str]],
    sources: list[dict[str, object]],
    recipe: Mapping[str, object],
) -> dict[str, np.ndarray]:
    from filelock import FileLock

    directory.mkdir(parents=True, exist_ok=True)
    with FileLock(str(entry) + ".lock"):  # two processes loading the same checkpoint convert it once
        cached = _read_entry(entry, pending)
        if cached is not None:
            return cached
        total = sum(int(np.prod(shape)) * np.dtype(dtype).itemsize for _, shape, dtype in pending)
        level = logging.INFO if total > 2**30 else logging.DEBUG  # said where it takes a while
        logger.log(level, "converting %d weights (%.1f GB) once into %s", len(pending), total / 1e9, entry)
        dtypes = {name: dtype for name, _, dtype in pending}

        def produce(name: str) -> np.ndarray:
            # dropped from ``weights``: one converted at a time (its mapped pages go with it)
            return aligned_copy(in_dtype(weights.pop(name), dtypes[name]), dtypes[name])

        write_aligned_safetensors(entry, pending, produce)
        # what an entry was converted from and into, less the files' state and the code: the same record with
        # another key is the same conversion of files since changed (or by older code), so stale
        tensors = hashlib.sha256(json.dumps(pending).encode()).hexdigest()
        record = json.loads(json.dumps({"format": FORMAT, "sources": [s["path"] for s in sources],
                                        "recipe": recipe, "tensors": tensors}, default=str))  # fmt: skip
        entry.with_suffix(".json").write_text(json.dumps({**record, "identity": sources}, indent=1) + "\n")
        _remove_stale(directory, entry, record)
    cached = _read_entry(entry, pending)
    if cached is None:
        raise OSError(f"{entry} was written but does not read back")
    return cached


def _remove_stale(directory: Path, entry: Path, record: dict[str, object]) -> None:
    """Earlier entries of the same conversion of the same files (since changed, or converted by older code) are
    deleted; other conversions of them (a stage-1 model's, another image size's) are kept."""
    for other in directory.glob("*.json"):
        if other == entry.with_suffix(".json"):
            continue
        try:
            described = json.loads(other.read_text())
        except (OSError, ValueError):
            continue
        if {k: described.get(k) for k in record} == record:
            other.with_suffix(".safetensors").unlink(missing_ok=True)  # a process mapping it keeps its pages
            other.unlink(missing_ok=True)
            Path(str(other.with_suffix(".safetensors")) + ".lock").unlink(missing_ok=True)
