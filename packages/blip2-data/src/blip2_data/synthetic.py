"""``synthetic_shapes``: a deterministic image–text dataset of coloured shapes, written in COCO's formats.

Each image holds one or two groups of identical shapes (a colour, a shape, a count of 1-3) on a plain
background; with two groups one sits in the top half and the other in the bottom half. Every image gets three
captions ("two red circles above a blue square") and VQAv2-style questions on colour, shape, count and position,
each with ten answers. The files are those of the real datasets, so the same loaders read them:

- ``images/shapes_<split>/COCO_shapes_<split>_<id:012d>.jpg`` (the VQAv2 image naming);
- ``annotations/captions_<split>.json``: coco_karpathy rows (train: one row per caption; eval: a caption list);
- ``annotations/vqa_<split>_questions.json`` + ``vqa_<split>_annotations.json``: the official VQAv2 format.

Positions are vertical only ("above", "at the top"): the training pipeline flips images left-right at random
(LAVIS's augmentation), which would make half of any "left of" caption wrong.

Splits ``train``, ``val`` and ``test`` are drawn from one distribution; ``shifted`` draws shapes smaller than
any training shape at the very top and bottom edges (where no training shape is centred) or larger than any, to
test whether captions of images drawn differently still name the right colours and shapes. Images are disjoint across splits (every
scene is drawn once, a scene identical to one already drawn is drawn again). The same ``seed`` and sizes write
byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 170, 40),
    "blue": (30, 60, 220),
    "yellow": (240, 210, 20),
    "purple": (140, 40, 180),
    "orange": (250, 130, 10),
}
BACKGROUNDS = {"white": (245, 245, 245), "gray": (128, 128, 128), "black": (15, 15, 15)}
SHAPES = ("circle", "square", "triangle")
NUMBERS = {1: "one", 2: "two", 3: "three"}
SPLITS = ("train", "val", "test", "shifted")
DEFAULT_SIZES = {"train": 3000, "val": 200, "test": 300, "shifted": 200}
IMAGE_SIZE = 128
# Training shapes are 22-34 px wide with centres 25-103 px from the top; "shifted" ones 14-18 px (centres in the
# outer 24 px) or 40-44 px wide.
TRAIN_SIZES = (22, 34)
SHIFTED_SIZES = ((14, 18), (40, 44))
# Answers a question type can have: chance level is one over their number (VQA accuracy of a uniform guess).
ANSWER_SETS = {
    "what color": tuple(COLOURS),
    "what shape": SHAPES,
    "how many": ("1", "2", "3"),
    "is there": ("yes", "no"),
    "where is": ("top", "bottom"),
}


@dataclass(frozen=True)
class Group:
    colour: str
    shape: str
    count: int
    place: str  # "top", "bottom" (two groups) or "middle" (one group, anywhere)

    def words(self) -> str:
        noun = self.shape + ("s" if self.count > 1 else "")
        article = ("an" if self.colour[0] in "aeiou" else "a") if self.count == 1 else NUMBERS[self.count]
        return f"{article} {self.colour} {noun}"


@dataclass(frozen=True)
class Scene:
    groups: tuple[Group, ...]
    background: str
    boxes: tuple[tuple[int, int, int], ...]  # (centre x, centre y, size) of every shape, group by group

    def key(self) -> str:
        return json.dumps([[g.colour, g.shape, g.count, g.place] for g in self.groups] + [self.background, self.boxes])


def captions(scene: Scene) -> list[str]:
    """Three phrasings of one scene."""
    background = f"on a {scene.background} background"
    if len(scene.groups) == 1:
        (g,) = scene.groups
        return [g.words(), f"{g.words()} {background}", f"there is {g.words()} {background}"]
    top, bottom = scene.groups
    return [f"{top.words()} above {bottom.words()}", f"{bottom.words()} below {top.words()}", f"{top.words()} and {bottom.words()} {background}"]  # fmt: skip


def questions(scene: Scene, rng: random.Random) -> list[tuple[str, str, str, str]]:
    """(question, answer, question_type, answer_type) rows: colour, shape, count, presence and position."""
    rows = []
    shapes = [g.shape for g in scene.groups]
    for g in scene.groups:
        unique_shape = shapes.count(g.shape) == 1
        thing = g.shape if unique_shape else f"{g.shape} at the {g.place}"
        if len(scene.groups) == 2 and unique_shape or len(scene.groups) == 1:
            rows.append((f"what color is the {thing}?", g.colour, "what color", "other"))
        if len(scene.groups) == 2:
            rows.append((f"what shape is at the {g.place}?", g.shape, "what shape", "other"))
            rows.append((f"where is the {g.colour} {g.shape}?", g.place, "where is", "other"))
        else:
            rows.append(("what shape is in the picture?", g.shape, "what shape", "other"))
        rows.append((f"how many {g.colour} {g.shape}s are there?", str(g.count), "how many", "number"))
    present = {(g.colour, g.shape) for g in scene.groups}
    colour, shape = rng.choice(sorted(present))
    if rng.random() < 0.5:  # as many "no" as "yes" questions: a colour or shape swapped for one not present
        absent = [(c, s) for c in COLOURS for s in SHAPES if (c, s) not in present and (c == colour or s == shape)]
        colour, shape = rng.choice(absent)
    rows.append((f"is there a {colour} {shape}?", "yes" if (colour, shape) in present else "no", "is there", "yes/no"))
    return rows


def ten_answers(answer: str) -> list[str]:
    """VQAv2 has ten human answers per question; ours agree, with the plural or number-word variants people give."""
    variants = {"1": "one", "2": "two", "3": "three"}
    if answer in variants:
        return [answer] * 8 + [variants[answer]] * 2
    if answer in SHAPES:
        return [answer] * 9 + [answer + "s"]
    return [answer] * 10


def _place_group(rng: random.Random, count: int, band: tuple[int, int], sizes: tuple[int, int]) -> list:
    """``count`` shapes side by side, one per equal slot of the width, centres in the vertical ``band`` (px)."""
    slot = (IMAGE_SIZE - 16) / count
    size = rng.randint(sizes[0], min(sizes[1], int(slot) - 4))
    half = size // 2 + 1
    y = rng.randint(band[0] + half, max(band[0] + half, band[1] - half))
    room = int(slot / 2 - half)
    return [(int(8 + slot * (i + 0.5)) + rng.randint(-room, room), y + rng.randint(-2, 2), size) for i in range(count)]


def draw_scene(rng: random.Random, shifted: bool) -> Scene:
    background = rng.choice(sorted(BACKGROUNDS))
    combos = [(c, s) for c in COLOURS for s in SHAPES]
    two = rng.random() < 0.7
    picked = rng.sample(combos, 2 if two else 1)
    counts = [rng.randint(1, 3) for _ in picked]
    if not shifted:
        sizes = TRAIN_SIZES
        bands = [(12, 62), (66, 116)] if two else [(20, 108)]
    elif rng.random() < 0.5:  # small shapes at the very edges, where no training shape is centred
        sizes = SHIFTED_SIZES[0]
        bands = [(0, 24), (104, 128)] if two else [rng.choice([(0, 24), (104, 128)])]
    else:  # large shapes (at most two side by side fit)
        sizes = SHIFTED_SIZES[1]
        counts = [min(c, 2) for c in counts]
        bands = [(0, 64), (64, 128)] if two else [rng.choice([(0, 52), (76, 128)])]
    places = ["top", "bottom"] if two else ["middle"]
    groups, boxes = [], []
    for (colour, shape), count, band, place in zip(picked, counts, bands, places):
        boxes += _place_group(rng, count, band, sizes)
        groups.append(Group(colour, shape, count, place))
    return Scene(tuple(groups), background, tuple(boxes))


def render(scene: Scene) -> Image.Image:
    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), BACKGROUNDS[scene.background])
    pen = ImageDraw.Draw(image)
    boxes = iter(scene.boxes)
    for group in scene.groups:
        fill = COLOURS[group.colour]
        for _ in range(group.count):
            x, y, size = next(boxes)
            r = size / 2
            if group.shape == "circle":
                pen.ellipse([x - r, y - r, x + r, y + r], fill=fill)
            elif group.shape == "square":
                pen.rectangle([x - r, y - r, x + r, y + r], fill=fill)
            else:
                pen.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], fill=fill)
    return image


def image_name(split: str, image_id: int) -> str:
    subtype = f"shapes_{split}"
    return f"{subtype}/COCO_{subtype}_{image_id:012d}.jpg"


def write_synthetic_shapes(
    root: str | Path, sizes: dict[str, int] | None = None, seed: int = 0
) -> dict[str, dict[str, str]]:
    """Write the dataset under ``root``; returns each split's files (``image_root``, ``captions``,
    ``questions``, ``annotations``). ``sizes``: images per split (default :data:`DEFAULT_SIZES`)."""
    sizes = {**DEFAULT_SIZES, **(sizes or {})}
    unknown = set(sizes) - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown splits {sorted(unknown)}; synthetic_shapes has {list(SPLITS)}")
    root = Path(root)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    next_id, next_question = 1, 1
    files = {}
    for split in SPLITS:
        rng = random.Random(f"synthetic_shapes:{seed}:{split}")
        (root / "images" / f"shapes_{split}").mkdir(parents=True, exist_ok=True)
        caption_rows, question_rows, answer_rows = [], [], []
        for _ in range(sizes[split]):
            scene = draw_scene(rng, shifted=split == "shifted")
            while scene.key() in seen:  # an image never appears in two splits (or twice in one)
                scene = draw_scene(rng, shifted=split == "shifted")
            seen.add(scene.key())
            image_id, name = next_id, image_name(split, next_id)
            next_id += 1
            render(scene).save(root / "images" / name, quality=95)
            texts = captions(scene)
            if split == "train":
                caption_rows += [{"image": name, "caption": t, "image_id": str(image_id)} for t in texts]
            else:
                caption_rows.append({"image": name, "caption": texts, "image_id": image_id})
            for question, answer, question_type, answer_type in questions(scene, rng):
                question_rows.append({"image_id": image_id, "question": question, "question_id": next_question})
                answer_rows.append(
                    {
                        "image_id": image_id,
                        "question_id": next_question,
                        "question_type": question_type,
                        "answer_type": answer_type,
                        "multiple_choice_answer": answer,
                        "answers": [
                            {"answer": a, "answer_confidence": "yes", "answer_id": i + 1}
                            for i, a in enumerate(ten_answers(answer))
                        ],
                    }
                )
                next_question += 1
        subtype = f"shapes_{split}"
        paths = {
            "image_root": str(root / "images"),
            "captions": str(root / "annotations" / f"captions_{split}.json"),
            "questions": str(root / "annotations" / f"vqa_{split}_questions.json"),
            "annotations": str(root / "annotations" / f"vqa_{split}_annotations.json"),
        }
        _write_json(paths["captions"], caption_rows)
        info = {"description": "synthetic_shapes", "data_subtype": subtype, "task_type": "Open-Ended"}
        _write_json(paths["questions"], {**info, "questions": question_rows})
        _write_json(paths["annotations"], {**info, "annotations": answer_rows})
        files[split] = paths
    return files


def synthetic_data_files(root: str | Path | None, splits: list[str]) -> list[list]:
    """``load_dataset("synthetic_shapes")`` without data_files: the default dataset, written once into ``root``
    (default ``$BLIP2_HOME/datasets/synthetic_shapes``), as ``[image_root, captions_json, split]`` entries."""
    return [[files["image_root"], files["captions"], split] for split in splits
            for files in [synthetic_split_files(root, split)]]  # fmt: skip


def synthetic_split_files(root: str | Path | None, split: str) -> dict[str, str]:
    """One split's files of the default dataset (``image_root``, ``captions``, ``questions``, ``annotations``),
    written once into ``root`` (default ``$BLIP2_HOME/datasets/synthetic_shapes``)."""
    from .download import datasets_home

    root = Path(root) if root is not None else datasets_home() / "synthetic_shapes"
    marker = root / "complete.json"
    if not marker.is_file():
        files = write_synthetic_shapes(root)
        marker.write_text(json.dumps(files, indent=1) + "\n")
    files = json.loads(marker.read_text())
    if split not in files:
        raise ValueError(f"synthetic_shapes has no split {split!r}; it has {sorted(files)}")
    return files[split]


def _write_json(path: str, value: object) -> None:
    Path(path).write_text(json.dumps(value, indent=1) + "\n")


def fingerprint(root: str | Path) -> str:
    """sha256 over every file written (names and bytes), to check that two runs wrote the same dataset."""
    digest = hashlib.sha256()
    root = Path(root)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    """``python -m blip2_data.synthetic OUT [--train N --val N --test N --shifted N --seed S]``"""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m blip2_data.synthetic", description=main.__doc__)
    parser.add_argument("out", help="folder to write the dataset into")
    parser.add_argument("--seed", type=int, default=0)
    for split in SPLITS:
        parser.add_argument(f"--{split}", type=int, default=DEFAULT_SIZES[split], help="images in this split")
    args = parser.parse_args(argv)
    files = write_synthetic_shapes(args.out, {s: getattr(args, s) for s in SPLITS}, seed=args.seed)
    print(json.dumps(files, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
