"""The recipe's more training scenes: written pictures with their captions and questions, none of a held-out
picture's content, the answers true of the drawn picture, and the VQA rows numbered after the dataset's."""

import json
from pathlib import Path

import numpy as np
from PIL import Image

from blip2_data.synthetic import BACKGROUNDS, COLOURS, write_synthetic_shapes
from blip2_shapes.drawn_differently import named_groups
from blip2_shapes.recipe.more_scenes import FOLDER, write_more_scenes
from blip2_shapes.recipe.recipe import vqa_training_file


def colour_shares(image: Image.Image) -> dict[str, float]:
    """The share of pixels nearest to each shape colour (and close to it): anti-aliased edges blend two colours
    (red and yellow into orange), so a colour counts as drawn by its share, not by any pixel."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.int32)
    palette = np.asarray([*COLOURS.values(), *BACKGROUNDS.values()])
    distance = np.abs(pixels[..., None, :] - palette).sum(axis=-1)
    nearest, close = distance.argmin(axis=-1), distance.min(axis=-1) < 80
    return {name: float(((nearest == i) & close).mean()) for i, name in enumerate(COLOURS)}


def test_more_scenes_are_written_with_true_captions_and_answers(tmp_path):
    files = write_synthetic_shapes(tmp_path / "data", {"train": 5, "val": 4, "test": 4, "shifted": 2}, seed=0)
    train, root = files["train"], Path(files["train"]["image_root"])
    held_out = {tuple(row["caption"]) for split in ("val", "test") for row in json.loads(Path(files[split]["captions"]).read_text())}  # fmt: skip
    out = tmp_path / "captions_more.json"
    questions = write_more_scenes(root, Path(train["captions"]), 40, held_out, out, varied=0.5, presence=True)

    original = json.loads(Path(train["captions"]).read_text())
    rows = json.loads(out.read_text())
    assert rows[: len(original)] == original  # the training rows first, unchanged
    more = rows[len(original) :]
    by_image: dict[str, list[str]] = {}
    for row in more:
        by_image.setdefault(row["image"], []).append(row["caption"])
    assert len(by_image) == 40 and all(len(texts) == 3 for texts in by_image.values())
    assert all(image.startswith(f"{FOLDER}/") for image in by_image)
    assert not {tuple(texts) for texts in by_image.values()} & held_out
    assert len({row["image_id"] for row in more}) == 40
    assert min(int(row["image_id"]) for row in more) > max(int(row["image_id"]) for row in original)

    sizes = set()
    for image, texts in by_image.items():
        with Image.open(root / image) as picture:
            sizes.add(picture.size)
            # every colour a caption names is drawn, and a colour it does not name is not
            named = {colour for text in texts for colour, _, _ in named_groups(text)}
            shares = colour_shares(picture)
            least_named = min(shares[colour] for colour in named)
            others = max(share for colour, share in shares.items() if colour not in named)
            assert least_named > 0.01 and others < least_named / 4, (image, shares, texts)
    assert (128, 128) in sizes and len(sizes) > 5  # the plain renderer's square and the varied canvases

    assert {row["image"] for row in questions} == set(by_image)
    presence = [row for row in questions if row["question"].startswith("is there")]
    # the dataset's one "is there" question per picture, then a "yes" for each drawn pair and as many near misses
    pairs = sum(len({g[:2] for text in texts for g in named_groups(text)}) for texts in by_image.values())
    assert len(presence) == 40 + 2 * pairs
    for row in questions:
        assert len(row["answer"]) == 10
        groups = {g for text in by_image[row["image"]] for g in named_groups(text)}
        question, answer = row["question"], row["answer"][0]
        if question.startswith("is there a "):
            colour, shape = question[len("is there a ") : -1].split()
            assert (answer == "yes") == any(g[:2] == (colour, shape) for g in groups), row
        elif question.startswith("how many "):
            colour, shapes = question.split()[2:4]
            assert (colour, shapes[:-1], int(answer)) in groups, row
        elif question.startswith("what color is the "):
            shape = question[len("what color is the ") :].split()[0].rstrip("?")
            assert any(g[:2] == (answer, shape) for g in groups), row


def test_vqa_rows_take_the_more_scenes_questions_after_the_dataset_ones(tmp_path):
    files = write_synthetic_shapes(tmp_path / "data", {"train": 4, "val": 1, "test": 1, "shifted": 1}, seed=0)
    train = files["train"]
    plain = json.loads(vqa_training_file(train, tmp_path / "plain.json").read_text())
    more = write_more_scenes(
        Path(train["image_root"]), Path(train["captions"]), 3, set(), tmp_path / "c.json", varied=0.0
    )
    rows = json.loads(vqa_training_file(train, tmp_path / "rows.json", more=more).read_text())
    assert rows[: len(plain)] == plain and len(rows) == len(plain) + len(more)
    assert len({row["question_id"] for row in rows}) == len(rows)
    assert [{k: row[k] for k in ("question", "image", "answer")} for row in rows[len(plain) :]] == more
