"""Pre-train the demo's small EVA-ViT on synthetic_shapes' training images: its stand-in for EVA-CLIP.

BLIP-2 starts from an image encoder that was pre-trained elsewhere (EVA-CLIP's ViT-g) and keeps it frozen in both
stages. No encoder of this size exists and no web images can be reached, so this short loop plays that part, as
``pretrain_lm.py`` does for the LLM: the ViT learns to name what the training captions name, for each group of
shapes (the top or only one, the bottom one or none) its colour, shape and count, and the background's colour.
The labels are read from the captions ("two red circles above a blue square", "... on a white background"), the
only annotation stage 1 sees too. Each label has a learned query that attends over the ViT's tokens (attention
pooling), as the Q-Former's queries will: with the cls token and the mean patch as the one input of every head, the
ViT named the top group's shape on held-out images 79% of the time, with the queries 97% (1200 steps, training
images only). The queries and heads are thrown away; the ViT's weights start the stage-1 model.

Besides the training images it sees more drawn in memory (``drawn_images``), as EVA-CLIP saw far more images than
BLIP-2's pairs, never one of a val, test or shifted image. Measured, 1200 steps with attention pooling: with 20 000
of them shapes 99/99% and counts 99/98% (top/bottom group), against 97/97% and 89/93% without.

Inputs: the evaluation transform of blip2-data (a resize, CLIP normalisation) and a random left-right flip, the
flip that leaves every caption true. Without a pre-trained encoder, stage 1 trains a random ViT through the
Q-Former, which learnt colours in 400 steps but next to nothing about shapes or counts (a linear probe of its
features named the top group's shape 43-48% of the time, a third being chance).
"""

from __future__ import annotations

import json
import random
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from blip2_data.synthetic import BACKGROUNDS, COLOURS, NUMBERS, SHAPES

from ..drawn_differently import Style, render_differently
from .rescaled_views import rescaled
from .short_training import adamw_warmup_cosine, optimise
from .unseen_scenes import unseen_scenes

COLOUR_NAMES, COUNT_WORDS = list(COLOURS), {"a": 1, "an": 1, **{word: n for n, word in NUMBERS.items()}}
BACKGROUND_NAMES = list(BACKGROUNDS)
# Per group slot: colour, shape, count, each with one more class for "no group here" (a one-group image's bottom);
# then the background (every caption that names it was at chance without this head: 33% of the test captions).
HEAD_SIZES = (len(COLOUR_NAMES) + 1, len(SHAPES) + 1, len(NUMBERS) + 1) * 2 + (len(BACKGROUND_NAMES),)


def group_labels(words: str, where: str) -> list[int]:
    """[colour, shape, count - 1] of "two red circles"; ``where`` names the caption in errors."""
    parts = words.split()
    if len(parts) != 3 or parts[0] not in COUNT_WORDS or parts[1] not in COLOUR_NAMES:
        raise ValueError(f"{where}: {words!r} is not '<count> <colour> <shape>'")
    shape = parts[2][:-1] if parts[2].endswith("s") else parts[2]
    if shape not in SHAPES:
        raise ValueError(f"{where}: {words!r} names no known shape")
    return [COLOUR_NAMES.index(parts[1]), SHAPES.index(shape), COUNT_WORDS[parts[0]] - 1]


def caption_labels(captions: list[str], where: str) -> list[int]:
    """Seven labels (top or only group, then bottom group or "none", then the background) from one image's
    captions: "A above B" for two groups, the bare "A" for one, "... on a C background"."""
    above = [c for c in captions if " above " in c]
    if above:
        top, bottom = above[0].split(" above ")
        labels = group_labels(top, where) + group_labels(bottom, where)
    else:
        bare = [c for c in captions if " background" not in c]
        if not bare:
            raise ValueError(f"{where}: no caption names its shapes alone ({captions})")
        labels = group_labels(bare[0], where) + [len(COLOUR_NAMES), len(SHAPES), len(NUMBERS)]
    backgrounds = [c.split(" on a ")[-1][: -len(" background")] for c in captions if c.endswith(" background")]
    if not backgrounds or backgrounds[0] not in BACKGROUND_NAMES:
        raise ValueError(f"{where}: no caption names a known background ({captions})")
    return labels + [BACKGROUND_NAMES.index(backgrounds[0])]


def image_labels(captions_file: Path) -> dict[str, list[int]]:
    """Image file -> its seven labels (``caption_labels``), from the training captions."""
    by_image: dict[str, list[str]] = {}
    for row in json.loads(Path(captions_file).read_text()):
        by_image.setdefault(row["image"], []).append(row["caption"])
    return {image: caption_labels(captions, f"{captions_file}: image {image}") for image, captions in by_image.items()}


def _training_canvas(rng: random.Random) -> tuple[int, int]:
    return rng.randint(88, 216), rng.randint(88, 216)  # aspect ratios 0.4-2.5, any size: not only the 128 square


# Augmentation that keeps every caption true: the shapes stay where they are relative to the canvas (top stays
# top), keep their colour names and counts; only how they are drawn changes. The model card's "drawn differently"
# figures come from drawn_differently.HELD_OUT, the same renderer at other settings and from other scenes.
TRAINING_STYLE = Style(
    _training_canvas,
    supersample=3,
    max_turn_degrees=12.0,
    colour_jitter=24,
    background_jitter=20,
    jpeg_qualities=(30, 95),
)


def drawn_images(
    count: int, held_out: set[tuple[str, ...]], seed: int = 0, varied: float = 0.0, rescaled_share: float = 0.0
) -> list[tuple[Any, list[int]]]:
    """``count`` more images of the training distribution, drawn in memory and JPEG-encoded as the dataset's files
    are, with their labels; none whose captions are those of a ``held_out`` image. ``varied``: the share of them
    drawn in ``TRAINING_STYLE`` instead (other canvases, anti-aliased, turned, jittered, any JPEG quality);
    ``rescaled_share``: the share (of either kind) then zoomed and moved (``rescaled_views.rescaled``)."""
    import io

    from PIL import Image

    from blip2_data.synthetic import render

    drawn = []
    styles = random.Random(f"drawn_images:{seed}:style")
    for scene, texts, _ in islice(unseen_scenes("drawn_images", held_out, seed), count):
        if styles.random() < varied:
            image = render_differently(scene, styles, TRAINING_STYLE)
        else:
            encoded = io.BytesIO()
            render(scene).save(encoded, "JPEG", quality=95)
            image = Image.open(encoded).convert("RGB")
        if rescaled_share and styles.random() < rescaled_share:
            image = rescaled(image, styles)
        drawn.append((image, caption_labels(texts, f"drawn image {len(drawn)}")))
    return drawn


def pretrain_vit(
    image_root: Path,
    captions_file: Path,
    vision: dict[str, Any],
    *,
    steps: int,
    batch_size: int = 64,
    learning_rate: float = 2e-3,
    seed: int = 0,
    initial_positions: np.ndarray | None = None,
    more_images: list[tuple[Any, list[int]]] = (),
    log=print,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Train on the training images and ``more_images`` (``drawn_images``); return the ViT's state dict (numpy)
    and a record of the losses and the accuracy on the held-out tenth of the training images."""
    import paddle
    import paddle.nn.functional as F
    from PIL import Image

    from blip2_data import ImageProcessor, ImageProcessorConfig
    from blip2_eva_vit import EvaVisionTransformer, EvaVitConfig

    labels = image_labels(captions_file)
    names = sorted(labels)
    processor = ImageProcessor(ImageProcessorConfig(image_size=vision["image_size"]), train=False)
    pixels = np.stack([processor(Image.open(Path(image_root) / name).convert("RGB")) for name in names])
    targets = np.array([labels[name] for name in names], dtype=np.int64)
    log(f"ViT pre-training: {len(names)} + {len(more_images)} images, {steps} steps of {batch_size}")

    paddle.seed(seed)
    vit = EvaVisionTransformer(EvaVitConfig(**vision))
    if initial_positions is not None:
        vit.pos_embed.set_value(initial_positions)
    width = vision["hidden_size"]
    norm = paddle.nn.LayerNorm(width)
    # one learned query per label reads the tokens (attention pooling): the cls token and the mean patch, pooled
    # for all seven heads alike, named the top group's shape on 79% of held-out images, these queries on 97%
    queries = paddle.create_parameter(
        [1, len(HEAD_SIZES), width], "float32", default_initializer=paddle.nn.initializer.Normal(std=0.02)
    )
    pool = paddle.nn.MultiHeadAttention(width, vision["num_heads"])
    heads = paddle.nn.LayerList([paddle.nn.Linear(width, n) for n in HEAD_SIZES])
    parameters = vit.parameters() + norm.parameters() + [queries] + pool.parameters() + heads.parameters()
    optimizer, schedule = adamw_warmup_cosine(parameters, learning_rate, steps, weight_decay=0.05, floor=0.02)

    def logits(batch: np.ndarray) -> list:
        tokens = norm(vit(paddle.to_tensor(batch)).last_hidden_state)
        pooled = pool(queries.expand([tokens.shape[0], *queries.shape[1:]]), tokens, tokens)
        return [head(pooled[:, i]) for i, head in enumerate(heads)]

    # the last tenth of the images is held out, to report what the ViT learnt on images it never saw
    held_out = max(1, len(names) // 10)
    train_x, train_y, test_x, test_y = pixels[:-held_out], targets[:-held_out], pixels[-held_out:], targets[-held_out:]
    if more_images:
        train_x = np.concatenate([train_x, np.stack([processor(image) for image, _ in more_images])])
        train_y = np.concatenate([train_y, np.array([labels for _, labels in more_images], dtype=np.int64)])
    order = np.random.RandomState(seed)
    vit.train()
    losses = []
    for step in range(steps):
        index = order.randint(0, len(train_x), batch_size)
        batch = train_x[index].copy()
        flip = order.rand(batch_size) < 0.5
        batch[flip] = batch[flip][..., ::-1]
        y = paddle.to_tensor(train_y[index])
        loss = sum(F.cross_entropy(out, y[:, i : i + 1]) for i, out in enumerate(logits(batch)))
        losses.append(optimise(loss, optimizer, schedule))
        if step % 100 == 0 or step == steps - 1:
            log(f"  ViT step {step}: loss {losses[-1]:.4f}")
    vit.eval()
    with paddle.no_grad():
        predicted = [out.argmax(axis=-1).numpy() for out in logits(test_x)]
    label_names = [f"{s}_{w}" for s in ("top", "bottom") for w in ("colour", "shape", "count")] + ["background"]
    accuracy = {name: round(float((predicted[i] == test_y[:, i]).mean()), 3) for i, name in enumerate(label_names)}
    record = {
        "steps": steps, "batch_size": batch_size, "images": len(names) - held_out, "held_out_images": held_out,
        "drawn_images": len(more_images),
        "first_loss": losses[0], "last_loss": float(np.mean(losses[-20:])), "held_out_accuracy": accuracy,
    }  # fmt: skip
    log(f"ViT pre-training: held-out accuracy {accuracy}")
    return {k: v.numpy() for k, v in vit.state_dict().items()}, record
