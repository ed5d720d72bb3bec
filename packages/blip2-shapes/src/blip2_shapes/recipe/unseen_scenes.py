"""Scenes of synthetic_shapes' training distribution that no held-out image shows: the extra text the LM reads
(``pretrain_lm.text_only_scenes``) and the extra images the ViT sees (``pretrain_vit.drawn_images``)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any


def unseen_scenes(
    purpose: str, held_out: set[tuple[str, ...]], seed: int = 0
) -> Iterator[tuple[Any, list[str], random.Random]]:
    """Endless (scene, captions, rng) from a generator seeded by ``purpose`` and ``seed``, skipping every scene
    whose captions are those of a ``held_out`` image; the rng is the one that drew the scene, for what follows."""
    from blip2_data.synthetic import captions, draw_scene

    rng = random.Random(f"{purpose}:{seed}")
    while True:
        scene = draw_scene(rng, shifted=False)
        texts = captions(scene)
        if tuple(texts) not in held_out:
            yield scene, texts, rng
