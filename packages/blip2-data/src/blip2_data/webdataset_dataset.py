""":class:`Blip2WebDataset`: the webdataset source as a paddle ``IterableDataset``, so that paddle's DataLoader
reads it in iterable mode (each worker iterates its own copy, see :mod:`blip2_data.webdataset_source`)."""

from __future__ import annotations

from .paddle_io import IterableDataset
from .webdataset_source import WebDatasetSource


class Blip2WebDataset(WebDatasetSource, IterableDataset):
    """A :class:`~blip2_data.webdataset_source.WebDatasetSource` that paddle's DataLoader accepts."""
