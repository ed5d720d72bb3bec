"""Downloading into ``$BLIP2_HOME`` (default ``~/.cache/blip2``): the project's one resumable downloader.

:func:`download_file` fetches a URL into ``<name>.part`` (resumed with an HTTP Range request if a previous run was
cut off), checks it against its expected size and checksum, and only then renames it to its final name, so a file
that exists under its final name is complete. A file lock around each file keeps parallel ranks from fetching it
twice. blip2-core fetches its release checkpoints with it too, and shares :func:`blip2_home` and
:func:`is_offline`, so models and datasets follow one cache root and one offline rule.

Which files each dataset needs is in :mod:`blip2_data.dataset_sources`; :mod:`blip2_data.prepare` fetches them.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from urllib.error import HTTPError
from urllib.request import Request, urlopen

from filelock import FileLock
from tqdm import tqdm

from .errors import ChecksumError

CHUNK_BYTES = 1 << 20
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "BLIP2_OFFLINE")
# Statuses worth running again for; any other HTTP error (404, 403, ...) will not go away by itself.
RETRYABLE_HTTP_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class IncompleteDownloadError(OSError):
    """The transfer stopped before the announced size; the ``.part`` file is kept and the next call resumes it."""

    def __init__(self, message: str, received: int | None = None, expected: int | None = None) -> None:
        # One positional argument, like the errors in blip2_data.errors: re-raising type(e)(message) must work.
        super().__init__(message)
        self.received = received
        self.expected = expected


def blip2_home() -> Path:
    """``$BLIP2_HOME``, default ``~/.cache/blip2``; an empty ``BLIP2_HOME`` counts as unset."""
    return Path(os.environ.get("BLIP2_HOME") or Path.home() / ".cache" / "blip2").expanduser()


def is_offline() -> bool:
    """Whether downloads are off: ``HF_HUB_OFFLINE``, ``TRANSFORMERS_OFFLINE`` or ``BLIP2_OFFLINE`` is 1/true/yes/on.

    Read at each call, so a process can switch it. HF's variables count too, so that one setting stops model
    and dataset downloads alike.
    """
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on") for v in OFFLINE_VARIABLES)


def is_retryable(error: BaseException) -> bool:
    """Whether a failed download may succeed when run again: a network failure or a transient HTTP status."""
    return not isinstance(error, HTTPError) or error.code in RETRYABLE_HTTP_STATUSES


def datasets_home() -> Path:
    return blip2_home() / "datasets"


def _file_digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(url: str, part: Path, *, progress: bool, timeout: float) -> int | None:
    """Append the rest of ``url`` to ``part``; return the full size the server announced (None if it did not)."""
    offset = part.stat().st_size if part.exists() else 0
    request = Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urlopen(request, timeout=timeout)
    except HTTPError as e:
        # 416: nothing past our offset. The part file is whole only if the server's total is our size;
        # a different total (the file changed) or none at all: start over.
        if e.code == 416 and offset:
            announced = e.headers.get("Content-Range", "").rpartition("/")[2]
            if announced.isdigit() and int(announced) == offset:
                return offset
            part.unlink()
            return _fetch(url, part, progress=progress, timeout=timeout)
        raise
    with response:
        if offset and response.status == 206:
            # "bytes <start>-<end>/<total>": the server must continue exactly where our file ends.
            content_range = response.headers.get("Content-Range", "")
            span, _, total_text = content_range.removeprefix("bytes ").partition("/")
            if span.partition("-")[0] != str(offset):
                raise OSError(f"{url}: server resumed at {content_range!r}, expected byte {offset}")
            total = int(total_text) if total_text.isdigit() else None
            mode = "ab"
        else:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            offset = 0  # a fresh download, or a server that ignored the Range header: start over
            mode = "wb"
        with (
            open(part, mode) as out,
            tqdm(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                desc=part.name[: -len(".part")],
                disable=not progress,
            ) as bar,
        ):
            for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
                out.write(chunk)
                bar.update(len(chunk))
    return total


def download_file(
    url: str,
    destination: str | os.PathLike,
    *,
    md5: str | None = None,
    sha256: str | None = None,
    size: int | None = None,
    progress: bool = True,
    timeout: float = 60.0,
    lock_timeout: float = -1,
) -> Path:
    """Fetch ``url`` to ``destination`` unless it is already there; resumable, verified, locked.

    Raises :class:`ChecksumError` (and deletes the partial file) when the size or checksum is wrong,
    :class:`IncompleteDownloadError` (keeping the partial file to resume from) when the transfer stops early, and
    the network's own errors (``URLError``, ``HTTPError``, ...; see :func:`is_retryable`) otherwise. It does not
    consult :func:`is_offline`: callers do, so that each can say where to place the file by hand.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    part = destination.with_name(destination.name + ".part")
    with FileLock(str(destination) + ".lock", timeout=lock_timeout):
        # Another rank may have finished while we waited for the lock.
        if destination.exists():
            return destination
        announced = _fetch(url, part, progress=progress, timeout=timeout)
        got = part.stat().st_size
        expected = size if size is not None else announced
        if expected is not None and got < expected:
            raise IncompleteDownloadError(
                f"{url}: download stopped at {got} of {expected} bytes; run again to resume from {part}", got, expected
            )
        problems = []
        if expected is not None and got != expected:
            problems.append(f"size {got} bytes, expected {expected}")
        for algorithm, want in (("md5", md5), ("sha256", sha256)):
            if want and (have := _file_digest(part, algorithm)) != want.lower():
                problems.append(f"{algorithm} {have}, expected {want}")
        if problems:
            part.unlink()
            raise ChecksumError(f"{url}: {'; '.join(problems)}; deleted {part}, run again to download it afresh")
        os.replace(part, destination)
    return destination
