"""Reading and writing state dicts as numpy arrays, without torch or paddle; one module per format.

Formats read by :func:`read_state_dict` (``reading``):

- safetensors (``safetensors_reader``): a single file, or HF's sharded layout (``model.safetensors.index.json``
  + shards), memory-mapped;
- torch zip checkpoints (``torch_zip``): ``.pth``/``.bin``/``.pt``, ``pytorch_model.bin`` and its sharded index,
  including LAVIS's ``{"model": state_dict, "optimizer": ..., "config": ..., "epoch": ...}`` files (the inner
  state dict is returned);
- paddle pickles (``paddle_pickle``): ``.pdparams``, ``model_state.pdparams``, as written by ``paddle.save``.

:func:`write_safetensors` (``safetensors_writer``) writes HF's layout, sharded when large, each file atomically;
:func:`write_aligned_safetensors` writes one file tensor by tensor, each 64-byte aligned (the converted-weights
cache, ``blip2_core.loading.weights_cache``).

bfloat16 tensors come back as float32 (exactly: a bf16 value is the top half of a float32), because numpy has no
bfloat16; every other dtype is kept.

Pickles and trust: torch and paddle checkpoints are pickles, and unpickling an arbitrary file can run arbitrary
code. They are read only when the caller passes ``trust_pickle=True`` (pass it when the user named the file
directly), and even then with a restricted unpickler (``restricted_unpickler``) that can build nothing but
containers, numpy arrays and the handful of torch tensor-rebuild functions, each mapped to numpy code; any other
class in the file is refused with an error naming it. torch itself is never imported. safetensors files need no
trust.
"""

from __future__ import annotations

from .errors import CheckpointError, IncompleteCheckpointError, UnsafePickleError, UntrustedPickleError
from .file_names import (
    DIRECTORY_FILES,
    PADDLE_NAME,
    PADDLE_SUFFIXES,
    SAFETENSORS_INDEX_NAME,
    SAFETENSORS_NAME,
    TORCH_INDEX_NAME,
    TORCH_NAME,
    TORCH_SUFFIXES,
)
from .reading import checkpoint_files, read_state_dict
from .safetensors_reader import read_safetensors
from .safetensors_writer import parse_size, write_aligned_safetensors, write_safetensors

__all__ = [
    "CheckpointError",
    "DIRECTORY_FILES",
    "IncompleteCheckpointError",
    "PADDLE_NAME",
    "PADDLE_SUFFIXES",
    "SAFETENSORS_INDEX_NAME",
    "SAFETENSORS_NAME",
    "TORCH_INDEX_NAME",
    "TORCH_NAME",
    "TORCH_SUFFIXES",
    "UnsafePickleError",
    "UntrustedPickleError",
    "checkpoint_files",
    "parse_size",
    "read_safetensors",
    "read_state_dict",
    "write_aligned_safetensors",
    "write_safetensors",
]
