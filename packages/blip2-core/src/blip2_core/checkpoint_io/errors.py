"""The errors every checkpoint reader raises; each message names the file."""

from __future__ import annotations

import pickle


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, or in a form this package does not read; the message names the file."""


class UntrustedPickleError(CheckpointError):
    """A pickle checkpoint was met without ``trust_pickle=True``."""


class UnsafePickleError(CheckpointError, pickle.UnpicklingError):
    """A pickle checkpoint refers to a class the restricted unpickler does not allow; the message names it."""
