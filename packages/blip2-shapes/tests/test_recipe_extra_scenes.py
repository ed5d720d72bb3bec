"""The recipe's extra pre-training data (blip2_shapes.recipe): the LM's text-only scenes and the ViT's images drawn in memory
come from the training distribution, are labelled as the dataset's files are, and never repeat a held-out image."""

import random

import pytest


@pytest.fixture(scope="module")
def demo():
    from blip2_shapes.recipe import pretrain_lm, pretrain_vit

    return pretrain_lm, pretrain_vit


def first_scene_captions(seed_name: str) -> tuple[str, ...]:
    from blip2_data.synthetic import captions, draw_scene

    return tuple(captions(draw_scene(random.Random(seed_name), shifted=False)))


def test_drawn_images_carry_their_background_and_skip_held_out_scenes(demo):
    from blip2_data.synthetic import BACKGROUNDS

    _, pretrain_vit = demo
    drawn = pretrain_vit.drawn_images(30, set())
    for image, labels in drawn:
        corner, expected = image.getpixel((0, 0)), list(BACKGROUNDS.values())[labels[6]]
        assert max(abs(a - b) for a, b in zip(corner, expected)) < 12, (corner, labels)  # read from the pixels
    assert {labels[3] for _, labels in drawn} > {6}  # one-group and two-group images both
    held_out = {first_scene_captions("drawn_images:0")}
    again = pretrain_vit.drawn_images(3, held_out)
    assert list(again[0][0].getdata()) != list(drawn[0][0].getdata())


def test_text_only_scenes_answer_their_own_questions_and_skip_held_out_scenes(demo):
    pretrain_lm, _ = demo
    scenes = pretrain_lm.text_only_scenes(20, set())
    for scene in scenes:
        assert len(scene["captions"]) == 3 and scene["qa"]
        for question, answer in scene["qa"]:
            if question.startswith("what color is the ") and " at the " not in question:
                shape = question[len("what color is the ") : -1]
                assert any(f"{answer} {shape}" in caption for caption in scene["captions"]), (question, scene)
    held_out = {tuple(scenes[0]["captions"])}
    assert held_out == {first_scene_captions("text_only_scenes:0")}
    assert tuple(pretrain_lm.text_only_scenes(3, held_out)[0]["captions"]) != tuple(scenes[0]["captions"])
