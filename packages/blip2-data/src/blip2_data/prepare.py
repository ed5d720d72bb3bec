"""A named dataset's files on disk: fetched from its sources into ``$BLIP2_HOME/datasets``, or, offline, an error
listing each missing file, its URL and where to put it.

Archives are extracted once (a marker file records it) and then deleted.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping, Sequence
from http.client import HTTPException
from pathlib import Path
from urllib.error import URLError

from filelock import FileLock

from .dataset_sources import DATASET_SOURCES, EVAL_SOURCES, RemoteFile
from .download import datasets_home, download_file, is_offline, is_retryable
from .errors import DATA_FILES_OPTION, ChecksumError, DatasetNotAvailableError


def _parse_checksum(text: str) -> tuple[str, str]:
    algorithm, _, digest = text.partition(":")
    if algorithm not in ("md5", "sha256") or not digest:
        raise ValueError(f"checksum must look like 'sha256:<hex>' or 'md5:<hex>', got {text!r}")
    return algorithm, digest.lower()


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
        raise DatasetNotAvailableError(f"no download sources for {name!r}; pass {DATA_FILES_OPTION}")
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
            f"{DATA_FILES_OPTION}):\n" + "\n".join(lines)
        )
    return [
        [str(root / split_sources[s].image_root), [str(root / a.path) for a in split_sources[s].annotations], s]
        for s in splits
    ]


def fetch_eval_files(
    name: str, cache_dir: str | os.PathLike | None, download: bool, progress: bool
) -> tuple[str, list[str]]:
    """Annotation files on disk (downloaded when allowed) and the image folder, or an error saying what to place."""
    source = EVAL_SOURCES[name]
    root = Path(cache_dir) if cache_dir is not None else datasets_home() / name
    offline = not download or is_offline()
    files, problems = [], []
    for url in source.annotation_urls:
        path = root / "annotations" / url.rsplit("/", 1)[1]
        files.append(str(path))
        if path.is_file():
            continue
        if offline:
            problems.append(f"  download {url}\n    to {path}")
            continue
        try:
            download_file(url, path, progress=progress)
        except ChecksumError:
            raise
        except OSError as error:
            problems.append(f"  download {url}\n    to {path}\n    failed: {type(error).__name__}: {error}")
    if source.coco_images:
        try:
            ((image_root, _, _),) = prepare_dataset("coco_caption", ["test"], download=download, progress=progress)
        except DatasetNotAvailableError as error:
            problems.append(str(error))
            image_root = ""
    else:
        image_root = str(root / "images")
        if not os.path.isdir(image_root):
            problems.append(f"  images: {source.images}\n    into {image_root}")
    if problems:
        raise DatasetNotAvailableError(
            f"{name} is not available offline. Place these files (or pass data_files=[image_root, annotation_json]):\n"
            + "\n".join(problems)
        )
    return image_root, files
