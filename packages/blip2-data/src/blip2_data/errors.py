"""Errors that say which file, row and sample went wrong, and the item that stands for a skipped bad sample.

Every class takes a single message argument: paddle's DataLoader re-raises a worker's exception in the main
process as ``type(exc)(message_with_traceback)``, so anything else would turn into a TypeError there.
"""

from __future__ import annotations

# An item that is only a note "this sample was bad and skipped": datasets return it, the collator drops it.
SKIPPED_KEY = "_skipped"
# How error messages name the option that skips bad rows; a command-line tool rewords it as its own flag.
SKIP_BAD_SAMPLES_OPTION = "skip_bad_samples=True"
# How error messages name the way to give local files; command-line tools reword it as their --data_files.
DATA_FILES_OPTION = "data_files=[[image_root, annotation_json, split]] to load_dataset"


class DatasetError(ValueError):
    """An annotation file or a data_files entry is unusable (bad JSON, missing key, empty, unknown name)."""


class BadSampleError(RuntimeError):
    """One sample could not be loaded (missing or corrupt image); the message names the sample and its row."""


class DatasetNotAvailableError(FileNotFoundError):
    """A dataset is not on disk and could not be downloaded; the message lists what to place where."""


class ChecksumError(OSError):
    """A downloaded file does not match its expected size or checksum."""
