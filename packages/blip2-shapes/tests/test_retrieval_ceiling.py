"""The retrieval ceiling in the model card: what a ranking that knows each image's content exactly can expect,
checked against every tie order enumerated by brute force on a small test split."""

import itertools
import json

import pytest

from blip2_shapes.recipe.baselines import retrieval_ceiling

ROWS = [  # a and b have the same content; c shares one caption with a and b (true of every background)
    ["a red circle above a blue square", "a blue square below a red circle", "a red circle and a blue square on a white background"],
    ["a red circle above a blue square", "a blue square below a red circle", "a red circle and a blue square on a white background"],
    ["a red circle above a blue square", "a blue square below a red circle", "a red circle and a blue square on a black background"],
    ["two green triangles", "two green triangles in the middle", "two green triangles on a gray background"],
    ["a yellow square", "a yellow square in the middle", "a yellow square on a white background"],
    ["three purple circles", "three purple circles in the middle", "three purple circles on a black background"],
]  # fmt: skip


def brute_force(k: int) -> tuple[float, float]:
    """Average recall@k over every order of the tied candidates at the top (the others below them)."""
    texts = [(i, caption) for i, captions in enumerate(ROWS) for caption in captions]
    image_hits = []
    for i, captions in enumerate(ROWS):
        tied = [j for j, (_, text) in enumerate(texts) if text in captions]
        orders = list(itertools.permutations(tied))
        image_hits.append(sum(any(texts[j][0] == i for j in order[:k]) for order in orders) / len(orders))
    text_hits = []
    for i, caption in texts:
        tied = [j for j, captions in enumerate(ROWS) if caption in captions]
        orders = list(itertools.permutations(tied))
        text_hits.append(sum(i in order[:k] for order in orders) / len(orders))
    return 100 * sum(image_hits) / len(image_hits), 100 * sum(text_hits) / len(text_hits)


def test_the_ceiling_is_the_average_over_tie_orders(tmp_path):
    path = tmp_path / "captions_test.json"
    path.write_text(json.dumps([{"image": f"{i}.jpg", "caption": c, "image_id": i} for i, c in enumerate(ROWS)]))
    ceiling = retrieval_ceiling({"test": {"captions": str(path)}})
    for k in (1, 5):
        image_to_text, text_to_image = brute_force(k)
        assert ceiling[f"txt_r{k}"] == pytest.approx(image_to_text, abs=0.05)
        assert ceiling[f"img_r{k}"] == pytest.approx(text_to_image, abs=0.05)
    assert ceiling["txt_r1"] < 100 and ceiling["img_r1"] < 100  # the ties cost something
    assert ceiling["images_sharing_all_captions"] == 2 and ceiling["images_sharing_a_caption"] == 3
