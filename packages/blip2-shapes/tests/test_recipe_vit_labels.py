"""The demo ViT's pre-training labels (blip2_shapes/recipe/pretrain_vit.py), read from the training captions, agree with
the VQA answers the generator wrote for the same images; a caption they cannot read is named."""

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def pretrain_vit():
    from blip2_shapes.recipe import pretrain_vit

    return pretrain_vit


def test_labels_agree_with_the_vqa_answers(pretrain_vit, tmp_path):
    from blip2_data.synthetic import SHAPES, write_synthetic_shapes

    train = write_synthetic_shapes(tmp_path, {"train": 60, "val": 1, "test": 1, "shifted": 1})["train"]
    labels = pretrain_vit.image_labels(Path(train["captions"]))
    image_of = {int(row["image_id"]): row["image"] for row in json.loads(Path(train["captions"]).read_text())}
    questions = {q["question_id"]: q for q in json.loads(Path(train["questions"]).read_text())["questions"]}
    checked = {"top shape": 0, "only shape": 0, "count": 0, "one group": 0}
    for row in json.loads(Path(train["annotations"]).read_text())["annotations"]:
        question = questions[row["question_id"]]
        label, answer = labels[image_of[question["image_id"]]], row["multiple_choice_answer"]
        if question["question"] == "what shape is at the top?":
            assert SHAPES[label[1]] == answer
            checked["top shape"] += 1
        elif question["question"] == "what shape is at the bottom?":
            assert SHAPES[label[4]] == answer
        elif question["question"] == "what shape is in the picture?":
            assert SHAPES[label[1]] == answer and label[3:6] == [6, 3, 3]  # no bottom group
            checked["only shape"] += 1
            checked["one group"] += 1
        elif row["question_type"] == "how many":
            colour, shape = question["question"].split()[2:4]
            shape = shape[:-1]
            groups = [label[:3], label[3:]]
            (group,) = [g for g in groups if g[0] < 6 and pretrain_vit.COLOUR_NAMES[g[0]] == colour
                        and SHAPES[g[1]] == shape]  # fmt: skip
            assert str(group[2] + 1) == answer
            checked["count"] += 1
    assert len(labels) == 60 and all(n > 0 for n in checked.values()), checked
    from PIL import Image

    from blip2_data.synthetic import BACKGROUNDS

    for name, label in labels.items():  # the background label against the image's own corner pixel
        corner = Image.open(Path(train["image_root"]) / name).convert("RGB").getpixel((0, 0))
        assert max(abs(a - b) for a, b in zip(corner, list(BACKGROUNDS.values())[label[6]])) < 12, name


def test_an_unreadable_caption_is_named(pretrain_vit, tmp_path):
    captions = tmp_path / "captions.json"
    captions.write_text(
        json.dumps([{"image": "a.jpg", "caption": "two red hexagons above a blue square", "image_id": "1"}])
    )
    with pytest.raises(ValueError, match=r"captions\.json: image a\.jpg: 'two red hexagons' names no known shape"):
        pretrain_vit.image_labels(captions)
