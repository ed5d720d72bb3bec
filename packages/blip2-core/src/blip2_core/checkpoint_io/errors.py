"""The errors every checkpoint reader raises; each message names the file."""

from __future__ import annotations

import pickle


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, or in a form this package does not read; the message names the file."""


class IncompleteCheckpointError(CheckpointError):
    """A checkpoint file ends before the data its header describes: most often a download that was cut off."""


class UntrustedPickleError(CheckpointError):
    """A pickle checkpoint was met without ``trust_pickle=True``; ``path`` is the file."""

    def __init__(self, path: object, message: str) -> None:
        self.path = path
        super().__init__(message)


class UnsafePickleError(CheckpointError, pickle.UnpicklingError):
    """A pickle checkpoint refers to a class the restricted unpickler does not allow; the message names it."""
