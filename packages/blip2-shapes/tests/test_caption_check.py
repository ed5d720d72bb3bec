"""The caption figures of the model card: exact colour-shape pairs, the same with counts, exact colours."""

import json

from blip2_shapes.recipe.baselines import shifted_caption_check

DRAWN = {  # image id -> the dataset's first caption
    "1": "two red circles above a blue square",
    "2": "three green triangles",
    "3": "a yellow square above two purple circles",
    "4": "an orange circle",
}
SAID = {
    "1": "two red circles above a blue square",  # all right
    "2": "two green triangles on a white background",  # pairs right, count wrong
    "3": "a yellow square above two red circles",  # a colour wrong
    "4": "an orange triangle",  # colours right, the shape wrong
}


def test_each_figure_counts_what_it_says(tmp_path):
    captions, results = tmp_path / "captions.json", tmp_path / "results.json"
    captions.write_text(json.dumps([{"image_id": i, "caption": [c, "other phrasing"]} for i, c in DRAWN.items()]))
    results.write_text(json.dumps([{"image_id": i, "caption": c} for i, c in SAID.items()]))
    check = shifted_caption_check(results, str(captions))
    assert check == {
        "images": 4,
        "exact_colour_shape_pairs_pct": 50.0,  # 1 and 2
        "exact_pairs_and_counts_pct": 25.0,  # 1 only
        "exact_colours_pct": 75.0,  # 1, 2 and 4
    }
