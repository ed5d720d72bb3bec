"""A folder of images searchable by text: stage-1 ITC features of every image, computed once and cached on disk.

The cache (``$BLIP2_HOME/gallery/<key>.npz``, the key from the model and the folder) keeps each image's
features with its size and modification time; on the next start only new or changed images are encoded.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..inference.image_sources import expand_images, read_image


class Gallery:
    """``search(texts, top_k)`` over the images of ``folder``; ``images[i]`` is a path relative to the folder."""

    def __init__(self, model: Any, tokenizer: Any, processor: Any, folder: Path) -> None:
        self.model, self.tokenizer, self.processor, self.folder = model, tokenizer, processor, folder
        self.images: list[str] = []
        self.features = np.zeros((0, 1, 1), "float32")  # [images, queries, dim], L2-normalised
        self.encoded = 0  # images encoded at start (the rest came from the cache)
        self.skipped: list[str] = []  # images that could not be read, with the reason

    @classmethod
    def load(
        cls,
        model_name_or_path: str,
        folder: str | os.PathLike,
        *,
        tokenizer: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        batch_size: int = 8,
    ) -> Gallery:
        """Load the stage-1 model and index ``folder`` (using and refreshing the cache)."""
        from blip2_data import blip2_home

        from ..loading.bundle import load_bundle

        bundle = load_bundle(model_name_or_path, stage1=True, tokenizer=tokenizer)
        gallery = cls(bundle.model, bundle.tokenizer, bundle.image_processor, Path(folder))
        key = hashlib.sha1(f"{Path(model_name_or_path).resolve()}|{Path(folder).resolve()}".encode()).hexdigest()
        cache = Path(cache_dir or blip2_home() / "gallery") / f"{key[:16]}.npz"
        gallery.index(cache, batch_size)
        return gallery

    def index(self, cache: Path, batch_size: int) -> None:
        paths = expand_images([str(self.folder)])
        stamps = {path: _stamp(path) for path in paths}
        cached = _read_cache(cache)
        todo = [path for path in paths if cached.get(self._relative(path), (None,))[0] != stamps[path]]
        fresh: dict[str, np.ndarray] = {}
        for start in range(0, len(todo), batch_size):
            batch, pixels = [], []
            for path in todo[start : start + batch_size]:
                try:
                    pixels.append(self.processor(read_image(path)))
                    batch.append(path)
                except OSError as error:
                    self.skipped.append(str(error))
            if batch:
                for path, features in zip(batch, self._image_features(pixels)):
                    fresh[self._relative(path)] = features
        self.encoded = len(fresh)
        rows = []
        for path in paths:
            name = self._relative(path)
            if name in fresh:
                rows.append((name, stamps[path], fresh[name]))
            elif name in cached and cached[name][0] == stamps[path]:
                rows.append((name, stamps[path], cached[name][1]))
        self.images = [name for name, _, _ in rows]
        if rows:
            self.features = np.stack([features for _, _, features in rows])
        _write_cache(cache, rows)

    def search(self, texts: Sequence[str], top_k: int) -> list[list[dict[str, Any]]]:
        """For each text, the ``top_k`` images whose best query is most similar (ITC cosine), best first."""
        import paddle

        from ..model.modeling import tokenize

        if not self.images:
            return [[] for _ in texts]
        input_ids, mask = tokenize(self.tokenizer, list(texts), left_pad=False)
        with paddle.no_grad():
            text = self.model.extract_features(input_ids=input_ids, attention_mask=mask, mode="text")
            text_features = text.text_embeds_proj[:, 0].numpy()
        scores = np.einsum("iqe,te->tiq", self.features, text_features).max(-1)  # [texts, images]
        results = []
        for row in scores:
            best = np.argsort(-row, kind="stable")[:top_k]
            results.append([{"index": int(i), "image": self.images[i], "score": float(row[i])} for i in best])
        return results

    def path(self, index: int) -> Path:
        return self.folder / self.images[index]

    def _image_features(self, pixels: list[np.ndarray]) -> np.ndarray:
        import paddle

        with paddle.no_grad():
            out = self.model.extract_features(paddle.to_tensor(np.stack(pixels)), mode="image")
        return out.image_embeds_proj.astype("float32").numpy()

    def _relative(self, path: str) -> str:
        return Path(path).relative_to(self.folder).as_posix()


def _stamp(path: str) -> str:
    info = os.stat(path)
    return f"{info.st_size}:{info.st_mtime_ns}"


def _read_cache(cache: Path) -> dict[str, tuple[str, np.ndarray]]:
    if not cache.exists():
        return {}
    try:
        with np.load(cache, allow_pickle=False) as data:
            return {
                str(name): (str(stamp), features)
                for name, stamp, features in zip(data["images"], data["stamps"], data["features"])
            }
    except (OSError, ValueError, KeyError):  # a damaged cache is only a slower start
        return {}


def _write_cache(cache: Path, rows: list[tuple[str, str, np.ndarray]]) -> None:
    if not rows:
        return
    cache.parent.mkdir(parents=True, exist_ok=True)
    temporary = cache.with_name(cache.name + ".tmp.npz")
    np.savez(
        temporary,
        images=np.array([name for name, _, _ in rows]),
        stamps=np.array([stamp for _, stamp, _ in rows]),
        features=np.stack([features for _, _, features in rows]),
    )
    os.replace(temporary, cache)  # never a half-written cache
