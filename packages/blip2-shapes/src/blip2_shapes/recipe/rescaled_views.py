"""Training pictures zoomed in or out and moved: an augmentation that keeps every caption and answer true.

The training generator draws shapes 22-34 px wide with centres 25-103 px from the top of a 128 px canvas, so a
model trained on its pictures alone has never seen a shape of another size or near an edge (the ``shifted`` split
draws exactly those). Scaling the whole picture about its shapes and moving it within the canvas changes neither
what is drawn nor which group is above the other, so the captions ("two red circles above a blue square") and the
answers ("where is the blue square?" -> "bottom": the lower of the two groups) stay true. A view never cuts a
shape: the scale is capped so that the box around all shapes fits the canvas, found from the pixels that differ
from the background (the training pictures' background is one colour).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
from PIL import Image

SCALES = (0.45, 1.6)  # picked log-uniformly: training shapes 22-34 px become 10-54 px, when they fit
MARGIN = 2  # px between the shapes' box and the canvas' edge
DIFFERENT = 60  # summed channel difference from the background that marks a shape's pixel (JPEG noise is below)


def _background_and_box(image: Image.Image) -> tuple[tuple[int, ...], tuple[int, int, int, int] | None]:
    """The background colour (the commonest border colour) and ``shapes_box``'s box."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.int32)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    background = np.median(border, axis=0)
    colour = tuple(int(c) for c in background)
    mask = np.abs(pixels - background).sum(axis=-1) > DIFFERENT
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return colour, None
    return colour, (int(columns[0]), int(rows[0]), int(columns[-1]) + 1, int(rows[-1]) + 1)


def shapes_box(image: Image.Image) -> tuple[int, int, int, int] | None:
    """(left, top, right, bottom) of the pixels that differ from the background (the commonest border colour),
    None for a picture of background only."""
    return _background_and_box(image)[1]


def rescaled(image: Image.Image, rng: random.Random, scales: tuple[float, float] = SCALES) -> Image.Image:
    """``image`` scaled by a factor from ``scales`` (capped so its shapes fit) and moved to a random place on a
    canvas of the same size and background."""
    background, box = _background_and_box(image)
    if box is None:
        return image.copy()
    width, height = image.size
    left, top, right, bottom = box
    fits = min((width - 2 * MARGIN) / (right - left), (height - 2 * MARGIN) / (bottom - top))
    low, high = np.log(scales[0]), np.log(min(scales[1], fits))
    scale = float(np.exp(rng.uniform(low, high))) if high > low else min(scales[1], fits)
    scaled = image.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.BILINEAR)
    # where the scaled shapes' box lands: anywhere that keeps it MARGIN px inside the canvas
    box_w, box_h = (right - left) * scale, (bottom - top) * scale
    x = rng.uniform(MARGIN, max(MARGIN, width - MARGIN - box_w))
    y = rng.uniform(MARGIN, max(MARGIN, height - MARGIN - box_h))
    canvas = Image.new("RGB", (width, height), background)
    canvas.paste(scaled, (round(x - left * scale), round(y - top * scale)))
    return canvas


def write_rescaled_views(
    image_root: Path, captions_file: Path, copies: int, out_captions: Path, seed: int = 0
) -> dict[str, list[str]]:
    """``copies`` rescaled views of every image of ``captions_file`` (blip2-data's caption rows), written beside
    the images under ``<folder>_rescaled/``; ``out_captions`` gets the original rows and a row per view and
    caption. Returns each original image's views (relative paths), for the question rows."""
    rows = json.loads(captions_file.read_text())
    rng = random.Random(f"rescaled_views:{seed}")
    views: dict[str, list[str]] = {}
    extra = []
    by_image: dict[str, list[dict]] = {}
    for row in rows:
        by_image.setdefault(row["image"], []).append(row)
    next_id = 1 + max(int(row["image_id"]) for row in rows)
    for image, image_rows in by_image.items():
        folder, name = image.rsplit("/", 1)
        with Image.open(image_root / image) as opened:
            original = opened.convert("RGB")
        for copy in range(copies):
            path = f"{folder}_rescaled/{copy}_{name}"
            (image_root / path).parent.mkdir(parents=True, exist_ok=True)
            rescaled(original, rng).save(image_root / path, "JPEG", quality=95)
            views.setdefault(image, []).append(path)
            extra += [{**row, "image": path, "image_id": str(next_id)} for row in image_rows]
            next_id += 1
    out_captions.write_text(json.dumps(rows + extra))
    return views
