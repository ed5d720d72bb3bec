"""Rescaled views: the shapes zoomed and moved, never cut, the groups in the same vertical order; and the extra
"is there" questions read from the captions."""

import json
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from blip2_data.synthetic import COLOURS, draw_scene, render
from blip2_shapes.recipe.rescaled_views import MARGIN, SCALES, rescaled, shapes_box, write_rescaled_views
from blip2_shapes.recipe.training_questions import presence_questions, with_views


def colour_rows(image: Image.Image, colour: str) -> np.ndarray:
    """The rows of the picture where ``colour`` is drawn (exactly, as the training renderer draws)."""
    pixels = np.asarray(image, dtype=np.int32)
    near = np.abs(pixels - np.asarray(COLOURS[colour])).sum(axis=-1) < 60
    return np.flatnonzero(near.any(axis=1))


def test_views_keep_every_shape_and_the_order_of_the_groups():
    rng, scenes = random.Random(0), random.Random(1)
    widths = []
    for _ in range(60):
        scene = draw_scene(scenes, shifted=False)
        image = render(scene)
        left, top, right, bottom = shapes_box(image)
        view = rescaled(image, rng)
        assert view.size == image.size
        v_left, v_top, v_right, v_bottom = shapes_box(view)
        # inside the canvas with its margin (one pixel for the resampling's edge), so nothing was cut
        assert v_left >= MARGIN - 1 and v_top >= MARGIN - 1
        assert v_right <= image.width - MARGIN + 1 and v_bottom <= image.height - MARGIN + 1
        scale = (v_right - v_left) / (right - left)
        assert SCALES[0] - 0.05 <= scale <= SCALES[1] + 0.05
        # same aspect: one scale for both axes
        assert (v_bottom - v_top) == pytest.approx((bottom - top) * scale, abs=3)
        widths.append(scale)
        colours = [g.colour for g in scene.groups]
        for colour in colours:
            assert len(colour_rows(view, colour)), f"{colour} lost"
        if len(scene.groups) == 2 and colours[0] != colours[1]:
            assert colour_rows(view, colours[0]).mean() < colour_rows(view, colours[1]).mean()  # top stays above
    assert min(widths) < 0.6 and max(widths) > 1.2  # both ways, where the shapes fit


def test_written_views_and_their_rows(tmp_path):
    scenes = random.Random(2)
    (tmp_path / "shapes_train").mkdir()
    rows = []
    for i in range(3):
        render(draw_scene(scenes, shifted=False)).save(tmp_path / "shapes_train" / f"{i}.jpg", quality=95)
        rows += [
            {"image": f"shapes_train/{i}.jpg", "caption": f"caption {i} {k}", "image_id": str(i)} for k in range(2)
        ]
    (tmp_path / "captions.json").write_text(json.dumps(rows))
    views = write_rescaled_views(tmp_path, tmp_path / "captions.json", 2, tmp_path / "out.json")
    written = json.loads((tmp_path / "out.json").read_text())
    assert written[:6] == rows and len(written) == 6 + 3 * 2 * 2
    assert sorted(views) == [f"shapes_train/{i}.jpg" for i in range(3)]
    for image, paths in views.items():
        assert len(paths) == 2 and all((tmp_path / p).is_file() for p in paths)
        view_rows = [r for r in written if r["image"] in paths]
        original = [r["caption"] for r in rows if r["image"] == image]
        assert sorted(r["caption"] for r in view_rows) == sorted(original * 2)  # each view, every caption
    assert len({r["image_id"] for r in written[6:]}) == 6  # one new id per view


def test_presence_questions_ask_each_drawn_pair_and_as_many_near_misses(tmp_path):
    rows = [
        {"image": "a.jpg", "caption": "two red circles above a blue square"},
        {"image": "a.jpg", "caption": "a blue square below two red circles"},
        {"image": "b.jpg", "caption": "three green triangles on a white background"},
    ]
    (tmp_path / "c.json").write_text(json.dumps(rows))
    asked = presence_questions(tmp_path / "c.json", first_id=100)
    assert [q["question_id"] for q in asked] == list(range(100, 100 + len(asked)))
    drawn = {"a.jpg": {("red", "circle"), ("blue", "square")}, "b.jpg": {("green", "triangle")}}
    for image, pairs in drawn.items():
        mine = [q for q in asked if q["image"] == image]
        said = {tuple(q["question"][len("is there a ") : -1].split()): q["answer"] for q in mine}
        assert {pair for pair, answer in said.items() if answer == ["yes"] * 10} == pairs
        noes = [pair for pair, answer in said.items() if answer == ["no"] * 10]
        assert len(noes) == len(pairs) and len(said) == len(mine)  # balanced, no question twice
        for colour, shape in noes:  # absent, one word from a drawn pair
            assert (colour, shape) not in pairs and any(colour == c or shape == s for c, s in pairs)
    views = with_views(asked, {"b.jpg": ["v1.jpg", "v2.jpg"]}, first_id=500)
    assert len(views) == len(asked) + 2 * 2
    assert [q["question_id"] for q in views[len(asked) :]] == [500, 501, 502, 503]
    (tmp_path / "bad.json").write_text(json.dumps([{"image": "c.jpg", "caption": "a photo"}]))
    with pytest.raises(ValueError, match="bad.json: image c.jpg"):
        presence_questions(tmp_path / "bad.json", first_id=0)


def test_vqa_rows_with_presence_questions_and_views(tmp_path):
    from blip2_data.synthetic import write_synthetic_shapes
    from blip2_shapes.recipe.recipe import vqa_training_file

    files = write_synthetic_shapes(tmp_path / "data", {"train": 6, "val": 1, "test": 1, "shifted": 1}, seed=0)
    train = files["train"]
    plain = json.loads(vqa_training_file(train, tmp_path / "plain.json").read_text())
    views = write_rescaled_views(
        Path(train["image_root"]), Path(train["captions"]), 1, tmp_path / "captions_views.json"
    )
    both = json.loads(vqa_training_file(train, tmp_path / "both.json", presence=True, views=views).read_text())
    extra = presence_questions(Path(train["captions"]), first_id=0)
    assert len(both) == 2 * (len(plain) + len(extra))  # every row again for the one view of its picture
    assert len({row["question_id"] for row in both}) == len(both)
    originals = {(row["image"], row["question"]) for row in plain}
    assert originals < {(row["image"], row["question"]) for row in both}
    for row in both:
        if row["image"] not in views:  # a view's row: its picture's question and answers, unchanged
            source = next(image for image, paths in views.items() if row["image"] in paths)
            assert any(r["image"] == source and r["question"] == row["question"] and r["answer"] == row["answer"]
                       for r in both)  # fmt: skip


def test_drawn_images_rescaled_share():
    from blip2_shapes.recipe.pretrain_vit import drawn_images

    plain = drawn_images(6, set(), seed=3)
    zoomed = drawn_images(6, set(), seed=3, rescaled_share=1.0)
    assert [labels for _, labels in plain] == [labels for _, labels in zoomed]  # the same scenes, the same labels
    boxes = [(shapes_box(a), shapes_box(b)) for (a, _), (b, _) in zip(plain, zoomed)]
    assert sum(a != b for a, b in boxes) >= 5  # moved and scaled
