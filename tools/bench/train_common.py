"""What both sides of the training benchmark share: the batch (numpy, so both frameworks get the same values)."""

from __future__ import annotations

import argparse

import numpy as np

TEXT_LENGTH = 32  # LAVIS's max_txt_len
LEARNING_RATE, WEIGHT_DECAY = 1e-4, 0.05  # LAVIS's stage-2 AdamW


def batch(images: int, image_size: int, vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Random pixels [images, 3, size, size] and caption ids [images, TEXT_LENGTH] (the labels too), never the
    vocabulary's last id (the HF side's image token)."""
    rng = np.random.RandomState(1)
    pixels = rng.standard_normal((images, 3, image_size, image_size)).astype(np.float32)
    ids = rng.randint(4, min(vocab_size - 1, 2000), (images, TEXT_LENGTH)).astype(np.int64)
    return pixels, ids


def forget_result(args: argparse.Namespace, side: str) -> None:
    """Remove this side's result of an earlier run: a run that fails then shows as failed, not as the old one."""
    (args.work / args.size / f"{side}-{args.dtype}.json").unlink(missing_ok=True)
