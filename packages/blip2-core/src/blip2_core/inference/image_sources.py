"""Where images come from: files, http(s) URLs, folders (recursively), globs and text files listing them."""

from __future__ import annotations

import glob
import io
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
LIST_SUFFIXES = frozenset({".txt", ".lst", ".list", ".tsv", ".csv"})


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def expand_images(specs: Iterable[str]) -> list[str]:
    """Every image the specs name, in a stable order, each once.

    A spec is an image file or URL (kept as given, even if it turns out not to be an image: that becomes
    an error row), a folder (its image files, recursively, sorted), a glob (``photos/**/*.jpg``, sorted) or a
    text file listing paths or URLs one per line (``#`` comments and blank lines skipped; relative paths are
    relative to the list's folder). ``ValueError`` for a spec that names nothing.
    """
    found: dict[str, None] = {}  # ordered set
    for spec in specs:
        for source in _expand_one(spec):
            found.setdefault(source)
    return list(found)


def _expand_one(spec: str) -> list[str]:
    if is_url(spec):
        return [spec]
    path = Path(spec)
    if path.is_dir():
        images = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not images:
            raise ValueError(f"{spec}: a folder with no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return [str(p) for p in images]
    if path.is_file():
        return _read_list(path) if path.suffix.lower() in LIST_SUFFIXES else [spec]
    if glob.has_magic(spec):
        matches = sorted(p for p in glob.glob(spec, recursive=True) if Path(p).is_file())
        if not matches:
            raise ValueError(f"{spec}: the pattern matches no files")
        return matches
    raise ValueError(f"{spec}: no such file, folder or list of images")


def _read_list(path: Path) -> list[str]:
    sources = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        sources.append(line if is_url(line) or Path(line).is_absolute() else str(path.parent / line))
    if not sources:
        raise ValueError(f"{path}: the list names no images")
    return sources


def read_image(path_or_url: str) -> Any:
    """An RGB image from a file or an http(s) URL; ``OSError`` naming the file and what is wrong with it."""
    if is_url(path_or_url):
        import requests

        try:
            response = requests.get(path_or_url, timeout=30)
            response.raise_for_status()
        except requests.RequestException as error:
            raise OSError(f"cannot fetch {path_or_url} ({type(error).__name__})") from None
        return decode_image(response.content, path_or_url)

    path = Path(path_or_url)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory, not an image file")
    if not path.is_file():
        raise FileNotFoundError(f"no image file at {path}")
    if path.stat().st_size == 0:
        raise OSError(f"{path} is empty (0 bytes)")
    return decode_image(path.read_bytes(), str(path))


class ImageTooLargeError(OSError):
    """An image over the pixel limit (or PIL's decompression-bomb limit)."""


def decode_image(data: bytes, name: str, max_pixels: int | None = None) -> Any:
    """Bytes -> an RGB PIL image, decoded in full now (a truncated file fails here); ``OSError`` saying why not."""
    with _opened(data, name) as image:
        if max_pixels is not None and image.width * image.height > max_pixels:
            raise ImageTooLargeError(
                f"{name} is {image.width}x{image.height} pixels, more than the limit of {max_pixels}"
            )
        return image.convert("RGB")


def image_size(data: bytes, name: str) -> tuple[int, int]:
    """(width, height) from the image's header, before any pixel is decoded; ``OSError`` if it is no image."""
    with _opened(data, name) as image:
        return image.size


@contextmanager
def _opened(data: bytes, name: str) -> Iterator[Any]:
    """The PIL image of ``data`` (lazy: only its header read); errors in the block become an ``OSError``
    naming ``name``."""
    from PIL import Image

    if not data:
        raise OSError(f"{name} is empty (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as image:
            yield image
    except ImageTooLargeError:
        raise
    except Image.UnidentifiedImageError:  # its own message holds the address of a BytesIO
        raise OSError(f"{name} is not a readable image (not a format PIL knows)") from None
    except Image.DecompressionBombError as error:
        raise ImageTooLargeError(f"{name} is too large to decode ({error})") from None
    # PIL reports some corrupt files as SyntaxError, ValueError or EOFError rather than OSError
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise OSError(f"{name} is not a readable image ({error})") from None
