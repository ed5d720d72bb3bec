"""RandAugment as LAVIS's ``blip_image_train`` processor applies it (``lavis/processors/randaugment.py``,
``RandomAugment(2, 5, isPIL=True, augs=[...])`` in ``lavis/processors/blip_processors.py``): what LAVIS's BLIP-2
stage-1 recipe (``lavis/projects/blip2/train/pretrain_stage1.yaml``) does to Visual Genome images.

N operations are drawn with replacement from the list; each is applied with probability 0.5 at magnitude M of
10. The operations and their magnitudes are LAVIS's; they are written here with PIL instead of OpenCV (LAVIS's
autocontrast and equalize are PIL's by its own docstrings; the geometric ones are the same affine maps, sampled
bilinearly, filled with grey 128). At M=5 LAVIS's enhance factor is exactly 1.0, so Brightness and Sharpness leave
the image as it is there, as they do in LAVIS.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageFilter, ImageOps

MAX_LEVEL = 10
FILL = (128, 128, 128)
TRANSLATE_CONST = 10  # pixels at the full level
# LAVIS's blip_image_train list
BLIP_AUGMENTATIONS = (
    "Identity",
    "AutoContrast",
    "Brightness",
    "Sharpness",
    "Equalize",
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
    "Rotate",
)


def _enhance_factor(level: float) -> float:
    return (level / MAX_LEVEL) * 1.8 + 0.1


def _signed(value: float, rng: Any, negative_when_above: bool = True) -> float:
    # LAVIS flips the sign on `random() > 0.5` for shear and translate, on `random() < 0.5` for rotation
    draw = rng.random()
    flip = draw > 0.5 if negative_when_above else draw < 0.5
    return -value if flip else value


def _affine(image: Image.Image, inverse: tuple[float, float, float, float, float, float]) -> Image.Image:
    # PIL takes the map from output to input pixels; LAVIS's cv2.warpAffine the forward one (inverted here)
    return image.transform(image.size, Image.Transform.AFFINE, inverse, Image.Resampling.BILINEAR, fillcolor=FILL)


def _brightness(image: Image.Image, factor: float) -> Image.Image:
    table = np.clip(np.arange(256, dtype=np.float32) * factor, 0, 255).astype(np.uint8)
    return Image.fromarray(table[np.asarray(image)])


def _sharpness(image: Image.Image, factor: float) -> Image.Image:
    if factor == 1.0:
        return image
    pixels = np.asarray(image).astype(np.float32)
    smooth = np.asarray(image.filter(ImageFilter.SMOOTH)).astype(np.float32)  # LAVIS's 1-1-1/1-5-1/1-1-1 kernel
    out = pixels.copy()
    out[1:-1, 1:-1] = smooth[1:-1, 1:-1] + factor * (pixels[1:-1, 1:-1] - smooth[1:-1, 1:-1])  # borders kept
    return Image.fromarray(out.astype(np.uint8))


def apply_operation(image: Image.Image, name: str, level: float, rng: Any) -> Image.Image:
    """One RandAugment operation at ``level`` (0-10); ``rng`` draws the direction of the geometric ones."""
    if name == "Identity":
        return image
    if name == "AutoContrast":
        return ImageOps.autocontrast(image)
    if name == "Equalize":
        return ImageOps.equalize(image)
    if name == "Brightness":
        return _brightness(image, _enhance_factor(level))
    if name == "Sharpness":
        return _sharpness(image, _enhance_factor(level))
    if name in ("ShearX", "ShearY"):
        shear = _signed((level / MAX_LEVEL) * 0.3, rng)
        return _affine(image, (1, -shear, 0, 0, 1, 0) if name == "ShearX" else (1, 0, 0, -shear, 1, 0))
    if name in ("TranslateX", "TranslateY"):
        offset = _signed((level / MAX_LEVEL) * TRANSLATE_CONST, rng)
        # LAVIS's forward map moves pixels by -offset: the output reads the input at +offset
        return _affine(image, (1, 0, offset, 0, 1, 0) if name == "TranslateX" else (1, 0, 0, 0, 1, offset))
    if name == "Rotate":
        degrees = _signed((level / MAX_LEVEL) * 30, rng, negative_when_above=False)
        return image.rotate(degrees, Image.Resampling.BILINEAR, fillcolor=FILL)  # counter-clockwise, as cv2's
    raise ValueError(f"unknown RandAugment operation {name!r}; known: {', '.join(BLIP_AUGMENTATIONS)}")


class RandomAugment:
    """``N`` operations drawn from ``augmentations``, each applied with probability 0.5 at magnitude ``M``."""

    def __init__(
        self, N: int = 2, M: float = 5, augmentations: Sequence[str] = BLIP_AUGMENTATIONS, rng: Any = None
    ) -> None:
        unknown = sorted(set(augmentations) - set(BLIP_AUGMENTATIONS))
        if unknown:
            raise ValueError(f"unknown RandAugment operations {unknown}; known: {', '.join(BLIP_AUGMENTATIONS)}")
        self.N, self.M, self.augmentations = N, M, tuple(augmentations)
        self.rng = rng if rng is not None else random

    def __call__(self, image: Image.Image, rng: Any = None) -> Image.Image:
        rng = rng or self.rng
        for name in [rng.choice(self.augmentations) for _ in range(self.N)]:
            if rng.random() > 0.5:
                continue
            image = apply_operation(image, name, self.M, rng)
        return image
