"""Pictures of the same scenes drawn by another renderer, and what the model says about them.

The training generator (``blip2_data.synthetic.render``) draws every picture the same way: a 128 px square
canvas, hard-edged shapes at right angles, exact colours, one JPEG quality. A model can learn those habits
instead of the shapes. This renderer draws scenes of the same distribution differently: another canvas size and
aspect ratio, anti-aliased edges (drawn at 4x and downsampled), every shape turned by up to 10 degrees, colours
and background jittered, and a JPEG quality of 40-95. None of that changes what the captions and answers say.

``measure`` captions such pictures and asks their colour questions, and reports how often the captions name
exactly the drawn colour-shape pairs, and with the right counts, and how often the colours are answered right.
"""

from __future__ import annotations

import io
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageDraw

from blip2_data.synthetic import BACKGROUNDS, COLOURS, IMAGE_SIZE, NUMBERS, SHAPES, Scene, captions, draw_scene

CANVASES = ((160, 120), (112, 144), (96, 96), (200, 160), (144, 112))  # (width, height): none is the 128 square
SUPERSAMPLE = 4
MAX_TURN_DEGREES = 10.0
COLOUR_JITTER, BACKGROUND_JITTER = 20, 15
JPEG_QUALITIES = (40, 95)
SEED = "drawn differently"  # never a seed of the dataset's splits


@dataclass(frozen=True)
class Style:
    """How ``render_differently`` draws: ``canvas`` picks (width, height) with the scene's random generator."""

    canvas: Callable[[random.Random], tuple[int, int]]
    supersample: int = SUPERSAMPLE
    max_turn_degrees: float = MAX_TURN_DEGREES
    colour_jitter: int = COLOUR_JITTER
    background_jitter: int = BACKGROUND_JITTER
    jpeg_qualities: tuple[int, int] = JPEG_QUALITIES


def _held_out_canvas(rng: random.Random) -> tuple[int, int]:
    return rng.choice(CANVASES)


HELD_OUT = Style(_held_out_canvas)  # what ``measure`` draws with; the recipe trains with other settings


def _jitter(colour: tuple[int, int, int], rng: random.Random, amount: int) -> tuple[int, int, int]:
    return tuple(min(255, max(0, c + rng.randint(-amount, amount))) for c in colour)  # type: ignore[return-value]


def _turned(
    points: list[tuple[float, float]], centre: tuple[float, float], degrees: float
) -> list[tuple[float, float]]:
    angle = math.radians(degrees)
    cos, sin = math.cos(angle), math.sin(angle)
    cx, cy = centre
    return [(cx + (x - cx) * cos - (y - cy) * sin, cy + (x - cx) * sin + (y - cy) * cos) for x, y in points]


def render_differently(scene: Scene, rng: random.Random, style: Style = HELD_OUT) -> Image.Image:
    """The scene on another canvas, anti-aliased, turned, jittered, through a JPEG of a random quality."""
    width, height = style.canvas(rng)
    big_w, big_h = width * style.supersample, height * style.supersample
    image = Image.new("RGB", (big_w, big_h), _jitter(BACKGROUNDS[scene.background], rng, style.background_jitter))
    pen = ImageDraw.Draw(image)
    # Centres keep their place relative to the canvas (top stays top); sizes scale with the shorter side so that a
    # circle stays round.
    scale_x, scale_y, scale = big_w / IMAGE_SIZE, big_h / IMAGE_SIZE, min(big_w, big_h) / IMAGE_SIZE
    boxes = iter(scene.boxes)
    for group in scene.groups:
        fill = _jitter(COLOURS[group.colour], rng, style.colour_jitter)
        for _ in range(group.count):
            x, y, size = next(boxes)
            cx, cy, r = x * scale_x, y * scale_y, size * scale / 2
            if group.shape == "circle":
                pen.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
                continue
            if group.shape == "square":
                corners = [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
            else:
                corners = [(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
            turn = rng.uniform(-style.max_turn_degrees, style.max_turn_degrees)
            pen.polygon(_turned(corners, (cx, cy), turn), fill=fill)
    small = image.resize((width, height), Image.LANCZOS)
    encoded = io.BytesIO()
    small.save(encoded, "JPEG", quality=rng.randint(*style.jpeg_qualities))
    return Image.open(io.BytesIO(encoded.getvalue())).convert("RGB")


def drawn_scenes(count: int, seed: str = SEED) -> list[tuple[Scene, Image.Image]]:
    """``count`` scenes of the training distribution, each drawn by this renderer (deterministic for a seed)."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        scene = draw_scene(rng, shifted=False)
        out.append((scene, render_differently(scene, rng)))
    return out


def named_groups(caption: str) -> set[tuple[str, str, int]]:
    """(colour, shape, count) of every group a caption names: "two red circles" -> ("red", "circle", 2)."""
    counts = {"a": 1, "an": 1, **{word: number for number, word in NUMBERS.items()}}
    words = caption.lower().replace(",", " ").split()
    groups = set()
    for index in range(len(words) - 1):
        shape = words[index + 1].rstrip("s")
        if words[index] in COLOURS and shape in SHAPES:
            said = counts.get(words[index - 1], 0) if index > 0 else 0  # 0: no count said, never right
            groups.add((words[index], shape, said))
    return groups


def colour_questions(scene: Scene) -> list[tuple[str, str]]:
    """(question, answer) for the colour of each shape the scene has once, phrased as the dataset asks it."""
    shapes = [group.shape for group in scene.groups]
    return [
        (f"what color is the {group.shape}?", group.colour) for group in scene.groups if shapes.count(group.shape) == 1
    ]


def measure(caption_predictor: Any, vqa_predictor: Any, count: int = 60, batch_size: int = 16) -> dict[str, Any]:
    """Captions and colour answers on ``count`` differently drawn pictures, scored against the drawn scenes."""
    from blip2_core.model.generation_settings import GenerationSettings

    drawn = drawn_scenes(count)
    said: list[str] = []
    asked: list[tuple[Any, str, str]] = []
    for start in range(0, count, batch_size):
        batch = drawn[start : start + batch_size]
        pixels = [caption_predictor.pixels(image) for _, image in batch]
        said += caption_predictor.caption(pixels, "", GenerationSettings())
        for scene, image in batch:
            asked += [(image, question, answer) for question, answer in colour_questions(scene)]
    answers: list[str] = []
    for start in range(0, len(asked), batch_size):
        batch = asked[start : start + batch_size]
        pixels = [vqa_predictor.pixels(image) for image, _, _ in batch]
        answers += vqa_predictor.answer(pixels, [question for _, question, _ in batch], GenerationSettings())
    exact_pairs = exact_groups = 0
    for (scene, _), caption in zip(drawn, said):
        truth = named_groups(captions(scene)[-1])  # the caption that names every group with its count
        named = named_groups(caption)
        exact_pairs += {(c, s) for c, s, _ in named} == {(c, s) for c, s, _ in truth}
        exact_groups += named == truth
    right = sum(answer.strip() == truth for answer, (_, _, truth) in zip(answers, asked))
    return {
        "images": count,
        "exact_colour_shape_pairs_pct": round(100 * exact_pairs / count, 1),
        "exact_pairs_and_counts_pct": round(100 * exact_groups / count, 1),
        "colour_questions": len(asked),
        "colour_answers_right_pct": round(100 * right / max(1, len(asked)), 1),
        "captions": said,
    }


def measure_model(model_directory: str, vqa_directory: str | None = None, count: int = 60) -> dict[str, Any]:
    """``measure`` for a model directory (and its VQA model, the same directory if none)."""
    from blip2_core.inference.predictor import Predictor

    captioner = Predictor.load(model_directory)
    answerer = Predictor.load(vqa_directory) if vqa_directory else captioner
    return measure(captioner, answerer, count)


def summary(measured: dict[str, Any]) -> dict[str, Any]:
    """The figures only (no captions), as scores.json keeps them."""
    return {key: value for key, value in measured.items() if key != "captions"}


__all__: Sequence[str] = (
    "Style",
    "HELD_OUT",
    "render_differently",
    "drawn_scenes",
    "named_groups",
    "measure",
    "measure_model",
)
