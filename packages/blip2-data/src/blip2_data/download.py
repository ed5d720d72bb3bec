"""Downloading into ``$BLIP2_HOME`` (default ``~/.cache/blip2``): the project's one resumable downloader.

:func:`download_file` fetches a URL into ``<name>.part`` (resumed with an HTTP Range request if a previous run was
cut off), checks it against its expected size and checksum, and only then renames it to its final name, so a file
that exists under its final name is complete. A file lock around each file keeps parallel ranks from fetching it
twice. blip2-core fetches its release checkpoints with it too, and shares :func:`blip2_home` and
:func:`is_offline`, so models and datasets follow one cache root and one offline rule.

Datasets go to ``$BLIP2_HOME/datasets`` (:func:`prepare_dataset`); archives are extracted once (a marker file
records it) and then deleted.

Checksums: the COCO 2014 image archives' md5 sums are the ones LAVIS's download scripts publish. For the LAVIS
annotation files and the Visual Genome archives no checksum is published that we could verify, so they are
checked against the size the server announces; pass ``checksums={"file name": "sha256:<hex>"}`` to pin one.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.client import HTTPException
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from filelock import FileLock
from tqdm import tqdm

from .errors import ChecksumError, DatasetNotAvailableError

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


@dataclass(frozen=True)
class RemoteFile:
    """A file to fetch to ``path`` (relative to the dataset folder); archives are extracted into ``extract_to``."""

    url: str
    path: str
    md5: str | None = None
    sha256: str | None = None
    size: int | None = None
    extract_to: str | None = None

    @property
    def name(self) -> str:
        return Path(self.path).name


@dataclass(frozen=True)
class SplitSource:
    """What one split needs: annotation files, image archives, and where the images end up."""

    annotations: Sequence[RemoteFile]
    archives: Sequence[RemoteFile] = field(default_factory=tuple)
    image_root: str = "images"


_LAVIS = "https://storage.googleapis.com/sfr-vision-language-research"
_COCO_TRAIN = RemoteFile(
    "http://images.cocodataset.org/zips/train2014.zip",
    "archives/train2014.zip",
    md5="0da8c0bd3d6becc4dcb32757491aca88",
    extract_to="images",
)
_COCO_VAL = RemoteFile(
    "http://images.cocodataset.org/zips/val2014.zip",
    "archives/val2014.zip",
    md5="a3d79f5ed8d289b7a7554ce06a5782b3",
    extract_to="images",
)
# LAVIS lists test2014's md5 for test2015.zip too, which cannot be right: no checksum for it.
_COCO_TEST2015 = RemoteFile(
    "http://images.cocodataset.org/zips/test2015.zip", "archives/test2015.zip", extract_to="images"
)


def _annotation(url: str) -> RemoteFile:
    return RemoteFile(url, "annotations/" + url.rsplit("/", 1)[1])


_VQA = f"{_LAVIS}/LAVIS/datasets/vqav2"

# Dataset name → folder under datasets_home() → split → sources. COCO captions and VQAv2 share the COCO images.
DATASET_SOURCES: dict[str, tuple[str, dict[str, SplitSource]]] = {
    "coco_caption": (
        "coco",
        {
            "train": SplitSource(
                [_annotation(f"{_LAVIS}/datasets/coco_karpathy_train.json")], [_COCO_TRAIN, _COCO_VAL]
            ),
            "val": SplitSource([_annotation(f"{_LAVIS}/datasets/coco_karpathy_val.json")], [_COCO_VAL]),
            "test": SplitSource([_annotation(f"{_LAVIS}/datasets/coco_karpathy_test.json")], [_COCO_VAL]),
        },
    ),
    "vg_caption": (
        "vg",
        {
            "train": SplitSource(
                [_annotation(f"{_LAVIS}/datasets/vg_caption.json")],
                [
                    RemoteFile(
                        "https://cs.stanford.edu/people/rak248/VG_100K_2/images.zip",
                        "archives/images.zip",
                        extract_to="images",
                    ),
                    RemoteFile(
                        "https://cs.stanford.edu/people/rak248/VG_100K_2/images2.zip",
                        "archives/images2.zip",
                        extract_to="images",
                    ),
                ],
            )
        },
    ),
    "coco_vqa": (
        "coco",
        {
            "train": SplitSource(
                [_annotation(f"{_VQA}/vqa_train.json"), _annotation(f"{_VQA}/vqa_val.json")], [_COCO_TRAIN, _COCO_VAL]
            ),
            "val": SplitSource(
                [
                    _annotation(f"{_VQA}/v2_OpenEnded_mscoco_val2014_questions.json"),
                    _annotation(f"{_VQA}/v2_mscoco_val2014_annotations.json"),
                ],
                [_COCO_VAL],
            ),
            "test": SplitSource([_annotation(f"{_VQA}/vqa_test.json")], [_COCO_TEST2015]),
        },
    ),
}


def _parse_checksum(text: str) -> tuple[str, str]:
    algorithm, _, digest = text.partition(":")
    if algorithm not in ("md5", "sha256") or not digest:
        raise ValueError(f"checksum must look like 'sha256:<hex>' or 'md5:<hex>', got {text!r}")
    return algorithm, digest.lower()


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


def _extract(archive: Path, into: Path) -> None:
    marker = into / f".extracted-{archive.name}"
    with FileLock(str(marker) + ".lock"):
        if marker.exists():
            return
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(into)  # zipfile drops absolute paths and ".." from member names
        marker.touch()
    archive.unlink(missing_ok=True)


def _is_ready(root: Path, remote: RemoteFile) -> bool:
    if remote.extract_to is None:
        return (root / remote.path).is_file()
    return (root / remote.extract_to / f".extracted-{remote.name}").exists()


def prepare_dataset(
    name: str,
    splits: Sequence[str],
    *,
    root: str | os.PathLike | None = None,
    download: bool = True,
    checksums: Mapping[str, str] | None = None,
    progress: bool = True,
) -> list[list]:
    """Make sure ``name``'s files for ``splits`` are on disk; return ``data_files`` for :func:`load_dataset`.

    Offline (``download=False``, :func:`is_offline`, or no network), raises :class:`DatasetNotAvailableError`
    listing each missing file, its URL and where to put it; nothing is requested when offline.
    """
    if name not in DATASET_SOURCES:
        raise DatasetNotAvailableError(f"no download sources for {name!r}; pass data_files=[[image_root, json, split]]")
    folder, split_sources = DATASET_SOURCES[name]
    unknown = [s for s in splits if s not in split_sources]
    if unknown:
        raise DatasetNotAvailableError(f"{name} has no split {unknown}; it has {sorted(split_sources)}")
    root = Path(root) if root is not None else datasets_home() / folder
    checksums = dict(checksums or {})
    needed: list[RemoteFile] = []
    for split in splits:
        for remote in [*split_sources[split].annotations, *split_sources[split].archives]:
            if remote not in needed and not _is_ready(root, remote):
                needed.append(remote)

    failures = []
    if download and not is_offline():
        for remote in needed:
            md5, sha256 = remote.md5, remote.sha256
            if remote.name in checksums:
                algorithm, digest = _parse_checksum(checksums[remote.name])
                md5, sha256 = (digest, None) if algorithm == "md5" else (None, digest)
            try:
                path = download_file(
                    remote.url, root / remote.path, md5=md5, sha256=sha256, size=remote.size, progress=progress
                )
            except (URLError, HTTPException, OSError) as e:
                if isinstance(e, ChecksumError):
                    raise
                failures.append((remote, e))
                continue
            if remote.extract_to is not None:
                _extract(path, root / remote.extract_to)
    else:
        failures = [(remote, None) for remote in needed]

    if failures:
        lines = []
        for remote, error in failures:
            where = root / remote.path
            what = f"download {remote.url}\n    to {where}"
            if remote.extract_to is not None:
                what += f" (it is extracted into {root / remote.extract_to}; or extract it there yourself and create {root / remote.extract_to / ('.extracted-' + remote.name)})"
            if error is not None:
                what += f"\n    failed: {type(error).__name__}: {error}"
                if not is_retryable(error):
                    what += " (running again will not help: check the URL)"
            lines.append("  " + what)
        raise DatasetNotAvailableError(
            f"{name} {list(splits)} is not available offline. Place these files (or pass "
            f"data_files=[[image_root, annotation_json, split]] to load_dataset):\n" + "\n".join(lines)
        )
    return [
        [str(root / split_sources[s].image_root), [str(root / a.path) for a in split_sources[s].annotations], s]
        for s in splits
    ]
