"""Getting a known model's weights onto disk: release URLs into ``$BLIP2_HOME/checkpoints``, Hub repos via ``hub``.

Release files (LAVIS's ``.pth``, PaddleMIX's ``.pdparams``) are downloaded with blip2-data's resumable
downloader, the one the datasets use, under the same offline rule and cache root; failures become
:class:`~blip2_core.loading.hub.ModelNotAvailableError` saying where to put the file by hand.
"""

from __future__ import annotations

import os
from http.client import HTTPException
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import unquote, urlparse

from filelock import Timeout

from blip2_data import IncompleteDownloadError, blip2_home, download_file, is_offline, is_retryable

from .hub import ModelNotAvailableError, resolve
from .model_names import ModelEntry


def url_cache_path(url: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where :func:`fetch_url` keeps ``url``: ``<cache_dir or $BLIP2_HOME>/checkpoints/<file name>``."""
    name = Path(unquote(urlparse(url).path)).name
    if not name or name in (".", ".."):
        raise ValueError(f"cannot name a cache file after {url!r}")
    root = Path(cache_dir).expanduser() if cache_dir is not None else blip2_home()
    return root / "checkpoints" / name


def _torch_hub_copy(url: str) -> Path | None:
    # LAVIS downloads these files into torch hub's cache: reuse a copy already there instead of fetching it again.
    torch_home = (
        os.environ.get("TORCH_HOME") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "torch"
    )
    candidate = Path(torch_home).expanduser() / "hub" / "checkpoints" / url_cache_path(url, "/").name
    return candidate if candidate.is_file() else None


def fetch_url(
    url: str,
    cache_dir: str | os.PathLike | None = None,
    *,
    timeout: float = 60.0,
    lock_timeout: float = -1,
) -> Path:
    """The local path of ``url``'s file, downloading it into the cache first if needed.

    The download goes to ``<name>.part`` and is resumed with an HTTP Range request after an interruption; the
    file appears under its final name only when complete, and a file lock keeps parallel processes (ranks) from
    fetching it twice. Offline (``HF_HUB_OFFLINE``, ``TRANSFORMERS_OFFLINE`` or ``BLIP2_OFFLINE``) or
    unreachable, raises :class:`ModelNotAvailableError` saying where to put the file.
    """
    destination = url_cache_path(url, cache_dir)
    if destination.is_file():
        return destination
    if cache_dir is None and (existing := _torch_hub_copy(url)) is not None:
        return existing
    if is_offline():
        raise ModelNotAvailableError(_url_not_available(url, destination, "offline (BLIP2_OFFLINE/HF_HUB_OFFLINE)"))
    part = destination.with_name(destination.name + ".part")
    try:
        return download_file(url, destination, progress=False, timeout=timeout, lock_timeout=lock_timeout)
    except Timeout:
        raise  # another process holds the file's lock: not a download failure
    except IncompleteDownloadError as e:
        reason = f"download stopped at {e.received} of {e.expected} bytes; run again to resume"
        raise ModelNotAvailableError(_url_not_available(url, destination, reason)) from e
    except (URLError, HTTPException, OSError) as e:
        if isinstance(e, HTTPError) and not is_retryable(e):
            raise ModelNotAvailableError(_url_not_available(url, destination, f"HTTP {e.code} {e.reason}")) from e
        kept = f"; {part.stat().st_size} bytes kept in {part}, run again to resume" if part.exists() else ""
        raise ModelNotAvailableError(_url_not_available(url, destination, f"download failed ({e}){kept}")) from e


def _url_not_available(url: str, destination: Path, reason: str) -> str:
    return (
        f"{url} is not available: {reason}.\n"
        f"  On a machine with network access download it (e.g. curl -L -o {destination.name} '{url}') and put it at\n"
        f"    {destination}\n"
        f"  (the cache is $BLIP2_HOME/checkpoints, BLIP2_HOME defaulting to ~/.cache/blip2), or pass the file's "
        f"path instead of the model name."
    )


def fetch_entry(entry: ModelEntry, cache_dir: str | os.PathLike | None = None) -> Path:
    """The local path of ``entry``'s weights: its release URL through :func:`fetch_url`, or its Hub repo."""
    return fetch_url(entry.source, cache_dir) if entry.is_url else resolve(entry.source)
