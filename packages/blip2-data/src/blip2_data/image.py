"""BLIP-2 image processors: RandomResizedCrop for training, a plain resize for evaluation, CLIP normalisation.

Configs are saved as HF's ``preprocessor_config.json`` (so HF checkpoints and ours read the same way), with our
training-crop settings as extra keys that HF's BlipImageProcessor ignores.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
from PIL import Image

from .randaugment import RandomAugment

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PRETRAIN_IMAGE_SIZE = 224
VQA_EVAL_IMAGE_SIZE = 224
CAPTION_EVAL_IMAGE_SIZE = 364  # the COCO-caption fine-tuned checkpoints
CONFIG_NAME = "preprocessor_config.json"

# PIL's resample codes, which HF stores as the integer "resample".
_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}
_RESAMPLE_NAME = {int(code): name for name, code in _RESAMPLE.items()}

ImageInput = Union[Image.Image, str, os.PathLike]


@dataclass
class ImageProcessorConfig:
    """Sizes and statistics of the image pipeline; ``image_size`` is the side of the square model input."""

    image_size: int = PRETRAIN_IMAGE_SIZE
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    interpolation: str = "bicubic"
    min_scale: float = 0.5
    max_scale: float = 1.0
    horizontal_flip: bool = True
    # LAVIS's blip_image_train (its stage-1 recipe's Visual Genome images): RandAugment(2, 5) after crop and flip
    rand_augment: bool = False

    def __post_init__(self) -> None:
        self.mean = tuple(float(v) for v in self.mean)
        self.std = tuple(float(v) for v in self.std)
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError(f"mean and std need 3 values (RGB), got {self.mean} and {self.std}")
        if self.interpolation not in _RESAMPLE:
            raise ValueError(f"interpolation must be one of {sorted(_RESAMPLE)}, got {self.interpolation!r}")
        if not 0 < self.min_scale <= self.max_scale <= 1:
            raise ValueError(f"need 0 < min_scale <= max_scale <= 1, got {self.min_scale}, {self.max_scale}")
        if self.image_size < 1:
            raise ValueError(f"image_size must be positive, got {self.image_size}")

    def to_preprocessor_dict(self) -> dict[str, Any]:
        """HF BlipImageProcessor keys, plus ours for the training crop."""
        return {
            "image_processor_type": "BlipImageProcessor",
            "processor_class": "Blip2Processor",
            "do_convert_rgb": True,
            "do_resize": True,
            "size": {"height": self.image_size, "width": self.image_size},
            "resample": int(_RESAMPLE[self.interpolation]),
            "do_rescale": True,
            "rescale_factor": 1 / 255,
            "do_normalize": True,
            "image_mean": list(self.mean),
            "image_std": list(self.std),
            "crop_scale": [self.min_scale, self.max_scale],
            "do_horizontal_flip": self.horizontal_flip,
            "rand_augment": self.rand_augment,
        }

    @classmethod
    def from_preprocessor_dict(cls, values: dict[str, Any]) -> ImageProcessorConfig:
        """Read HF's ``preprocessor_config.json`` (BlipImageProcessor) or ours."""
        size = values.get("size", PRETRAIN_IMAGE_SIZE)
        if isinstance(size, dict):
            if "height" in size:
                if size["height"] != size.get("width", size["height"]):
                    raise ValueError(f"only square image sizes are supported, got {size}")
                size = size["height"]
            elif "shortest_edge" in size:
                size = size["shortest_edge"]
            else:
                raise ValueError(f"unrecognised size {size}")
        if values.get("do_rescale", True) is False or values.get("do_normalize", True) is False:
            raise ValueError("configs with do_rescale or do_normalize false are not supported")
        resample = values.get("resample", int(_RESAMPLE["bicubic"]))
        if resample not in _RESAMPLE_NAME:
            raise ValueError(f"unknown PIL resample code {resample}")
        min_scale, max_scale = values.get("crop_scale", (0.5, 1.0))
        return cls(
            image_size=int(size),
            mean=tuple(values.get("image_mean", CLIP_MEAN)),
            std=tuple(values.get("image_std", CLIP_STD)),
            interpolation=_RESAMPLE_NAME[resample],
            min_scale=float(min_scale),
            max_scale=float(max_scale),
            horizontal_flip=bool(values.get("do_horizontal_flip", True)),
            rand_augment=bool(values.get("rand_augment", False)),
        )


def load_image(path: str | os.PathLike) -> Image.Image:
    """Decode fully (PIL is lazy, so a truncated JPEG would otherwise fail later, far from here) and make RGB."""
    with Image.open(path) as image:
        return image.convert("RGB")


class ImageProcessor:
    """Image → normalised float32 array ``[3, image_size, image_size]``.

    ``train=True``: RandomResizedCrop(image_size, scale=(min_scale, max_scale)) and, if configured, a random
    horizontal flip and LAVIS's RandAugment (``rand_augment``). ``train=False``: resize to image_size × image_size. Both use the configured interpolation.
    Randomness comes from the ``random`` module (paddle's DataLoader seeds it per worker) unless ``rng`` is given.
    """

    def __init__(self, config: ImageProcessorConfig | None = None, *, train: bool = False, rng=None) -> None:
        self.config = config or ImageProcessorConfig()
        self.train = train
        self.rng = rng if rng is not None else random
        # Folded into one multiply-add: (x / 255 - mean) / std == x * scale + shift.
        std = np.asarray(self.config.std, dtype=np.float32)
        self._scale = (1.0 / (255.0 * std)).reshape(3, 1, 1)
        self._shift = (-np.asarray(self.config.mean, dtype=np.float32) / std).reshape(3, 1, 1)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, *, train: bool = False) -> ImageProcessor:
        """From a model directory holding ``preprocessor_config.json`` (HF or ours), or that file itself."""
        path = Path(path)
        file = path / CONFIG_NAME if path.is_dir() else path
        if not file.is_file():
            raise FileNotFoundError(f"no {CONFIG_NAME} in {path}")
        with open(file, encoding="utf-8") as f:
            values = json.load(f)
        # Processor-level files (HF's Blip2Processor) nest the image settings.
        values = values.get("image_processor", values)
        return cls(ImageProcessorConfig.from_preprocessor_dict(values), train=train)

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``preprocessor_config.json`` into ``directory`` (next to the model's config.json)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        file = directory / CONFIG_NAME
        with open(file, "w", encoding="utf-8") as f:
            json.dump(self.config.to_preprocessor_dict(), f, indent=2)
        return file

    def random_resized_crop_box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """torchvision's RandomResizedCrop sampling (ratio 3/4..4/3, 10 tries, centre-crop fallback)."""
        area = width * height
        log_ratio = (math.log(3 / 4), math.log(4 / 3))
        for _ in range(10):
            target_area = area * self.rng.uniform(self.config.min_scale, self.config.max_scale)
            aspect = math.exp(self.rng.uniform(*log_ratio))
            w = int(round(math.sqrt(target_area * aspect)))
            h = int(round(math.sqrt(target_area / aspect)))
            if 0 < w <= width and 0 < h <= height:
                left = self.rng.randint(0, width - w)
                top = self.rng.randint(0, height - h)
                return left, top, left + w, top + h
        in_ratio = width / height
        if in_ratio < 3 / 4:
            w, h = width, int(round(width / (3 / 4)))
        elif in_ratio > 4 / 3:
            w, h = int(round(height * (4 / 3))), height
        else:
            w, h = width, height
        left, top = (width - w) // 2, (height - h) // 2
        return left, top, left + w, top + h

    def __call__(self, image: ImageInput) -> np.ndarray:
        if not isinstance(image, Image.Image):
            image = load_image(image)
        elif image.mode != "RGB":
            image = image.convert("RGB")
        size = (self.config.image_size, self.config.image_size)
        resample = _RESAMPLE[self.config.interpolation]
        if self.train:
            # Crop first, then resize, as torchvision does: resize(box=...) would let the bicubic filter read
            # pixels outside the box at its edges.
            image = image.crop(self.random_resized_crop_box(*image.size)).resize(size, resample)
            if self.config.horizontal_flip and self.rng.random() < 0.5:
                image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            if self.config.rand_augment:
                image = RandomAugment(rng=self.rng)(image)
        else:
            image = image.resize(size, resample)
        pixels = np.asarray(image, dtype=np.float32).transpose(2, 0, 1)
        return pixels * self._scale + self._shift

    def __repr__(self) -> str:
        return f"ImageProcessor(train={self.train}, {dataclasses.asdict(self.config)})"
