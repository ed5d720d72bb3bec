"""Name-or-path resolution: a local file or directory as is, else a Hugging Face Hub repo through its cache.

``resolve("Salesforce/blip2-opt-2.7b")`` returns the cached snapshot directory, downloading what is missing;
``resolve("org/name/sub/dir")`` returns the ``sub/dir`` folder inside repo ``org/name`` and fetches only that
folder. Nothing is downloaded at import or by constructors: only :func:`resolve` touches the network.

The environment is read at each call (not at import, as ``huggingface_hub.constants`` does), so a process can
switch it: ``HF_HUB_OFFLINE=1`` (also ``TRANSFORMERS_OFFLINE``, ``BLIP2_OFFLINE``) uses the cache only, by the
same rule as every download in the project (``blip2_data.is_offline``); ``HF_HUB_CACHE`` / ``HF_HOME`` choose
the cache; ``HF_ENDPOINT`` a mirror.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Sequence
from pathlib import Path

from blip2_data import is_offline


class ModelNotAvailableError(OSError):
    """A model is neither a local path nor obtainable from the Hub now; the message says what to fetch where."""


def hub_cache_dir() -> Path:
    """The HF Hub cache in effect now: ``HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``."""
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(variable):
            return Path(os.environ[variable]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_home).expanduser() / "huggingface" / "hub"


def split_repo_id(name: str) -> tuple[str, str | None]:
    """``"org/name/sub/dir"`` -> ``("org/name", "sub/dir")``; ``"org/name"`` -> ``("org/name", None)``."""
    parts = [p for p in name.strip("/").split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise ValueError(f"{name!r} is not a Hub repo id")
    if len(parts) <= 2:
        return "/".join(parts), None
    return "/".join(parts[:2]), "/".join(parts[2:])


def looks_like_a_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~", "\\")) or (len(name) > 1 and name[1] == ":") or name in (".", "..")


def resolve(
    name_or_path: str | os.PathLike,
    allow_patterns: str | Sequence[str] | None = None,
    revision: str | None = None,
) -> Path:
    """A local path for ``name_or_path``: an existing file or directory as is, else a Hub repo id.

    ``allow_patterns`` (glob patterns, relative to the subfolder when one is given) limits what is downloaded,
    e.g. ``["*.json", "*.safetensors"]``; ``revision`` is a branch, tag or commit (default ``main``). Raises
    :class:`ModelNotAvailableError` when offline or unreachable and the files are not cached.
    """
    text = os.fspath(name_or_path)
    local = Path(text).expanduser()
    if local.exists():
        return local
    if looks_like_a_path(text):
        raise FileNotFoundError(f"no such file or directory: {local}")
    repo_id, subfolder = split_repo_id(text)
    patterns = _scoped_patterns(allow_patterns, subfolder)
    snapshot = _snapshot(repo_id, subfolder, patterns, revision)
    target = snapshot / subfolder if subfolder else snapshot
    if not target.exists():
        if is_offline():
            reason = f"folder {subfolder!r} is not in the cached snapshot {snapshot}"
            raise ModelNotAvailableError(_not_available_message(repo_id, subfolder, patterns, revision, reason))
        raise ModelNotAvailableError(
            f"{repo_id} (revision {revision or 'main'}) has no folder {subfolder!r}; its snapshot is at {snapshot}"
        )
    if patterns and not _matching_files(snapshot, patterns):
        # An offline cache can hold the snapshot folder without the files asked for.
        raise ModelNotAvailableError(_not_available_message(repo_id, subfolder, patterns, revision, "not in the cache"))
    return target


def _scoped_patterns(allow_patterns: str | Sequence[str] | None, subfolder: str | None) -> list[str] | None:
    if isinstance(allow_patterns, str):
        allow_patterns = [allow_patterns]
    if subfolder is None:
        return list(allow_patterns) if allow_patterns is not None else None
    return [f"{subfolder}/{p}" for p in (allow_patterns or ["*"])]


def _matching_files(snapshot: Path, patterns: list[str]) -> list[Path]:
    files = [p for p in snapshot.rglob("*") if p.is_file()]
    return [p for p in files if any(fnmatch.fnmatch(p.relative_to(snapshot).as_posix(), pat) for pat in patterns)]


def _snapshot(repo_id: str, subfolder: str | None, patterns: list[str] | None, revision: str | None) -> Path:
    # Imported here: importing blip2_core must not import (or configure) huggingface_hub.
    import requests
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    offline = is_offline()
    endpoint = os.environ.get("HF_ENDPOINT") or None
    # huggingface_hub's errors end in a urllib3 retry repr: the messages below say the same in one sentence.
    unreachable = f"{endpoint or 'the Hugging Face Hub'} could not be reached (no network, or a proxy or firewall)"
    try:
        folder = snapshot_download(
            repo_id,
            revision=revision,
            allow_patterns=patterns,
            cache_dir=hub_cache_dir(),
            local_files_only=offline,
            endpoint=endpoint,
        )
    except LocalEntryNotFoundError:
        reason = "HF_HUB_OFFLINE is set" if offline else unreachable
        raise ModelNotAvailableError(_not_available_message(repo_id, subfolder, patterns, revision, reason)) from None
    except (RepositoryNotFoundError, GatedRepoError, RevisionNotFoundError) as e:
        raise ModelNotAvailableError(
            f"{repo_id}: {type(e).__name__}: the repo or revision {revision or 'main'} does not exist on the Hub, "
            f"or it is private/gated and needs a token (huggingface-cli login, or HF_TOKEN)"
        ) from e
    except (requests.ConnectionError, requests.Timeout) as e:
        reason = f"{unreachable}; the download stopped ({type(e).__name__})"
        raise ModelNotAvailableError(_not_available_message(repo_id, subfolder, patterns, revision, reason)) from None
    return Path(folder)


def _not_available_message(
    repo_id: str, subfolder: str | None, patterns: list[str] | None, revision: str | None, reason: str
) -> str:
    what = ", ".join(patterns) if patterns else "all files"
    include = "".join(f" --include '{p}'" for p in patterns or [])
    revision_arg = f" --revision {revision}" if revision else ""
    pass_as = f"DIR/{subfolder}" if subfolder else "DIR"
    return (
        f"model {repo_id}{'/' + subfolder if subfolder else ''} is not available: {reason}, and it is not in the "
        f"Hugging Face cache {hub_cache_dir()}.\n"
        f"  needed from repo {repo_id} (revision {revision or 'main'}): {what}\n"
        f"  either, on a machine with network access, run\n"
        f"    huggingface-cli download {repo_id}{revision_arg}{include} --local-dir DIR\n"
        f"  copy DIR here and pass {pass_as} instead of the repo id;\n"
        f"  or fill the cache: run the same command with --cache-dir instead of --local-dir (or with HF_HUB_CACHE "
        f"set) and copy its models--{repo_id.replace('/', '--')} folder into {hub_cache_dir()}"
    )
