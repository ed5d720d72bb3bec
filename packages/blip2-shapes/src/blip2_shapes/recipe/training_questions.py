"""The VQA step's training rows: the dataset's questions, more "is there" questions, and the rescaled views.

synthetic_shapes asks one "is there" question per image, about one pair, so 3000 training images give 1500 "no"
examples, each about one way a pair can be absent. Answering it needs every group of the picture, and the model
answered it least often of all question types (64% on test, chance 50%). The captions say which pairs are drawn,
so this adds, per training image, a "yes" question for each drawn pair and as many "no" questions about a pair
that is one word away from a drawn one (the colour or the shape swapped), as the dataset's own "no" questions are.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from blip2_data.synthetic import COLOURS, SHAPES

from ..drawn_differently import named_groups


def presence_questions(captions: Path | list[dict], first_id: int, seed: int = 0) -> list[dict]:
    """Rows as ``vqa_training_file`` writes them (image, question, ten answers), ids from ``first_id``, for the
    pictures of ``captions``: a captions file or its rows (blip2-data's training rows, one caption each)."""
    where = str(captions) if isinstance(captions, Path) else "caption rows"
    drawn: dict[str, set[tuple[str, str]]] = {}
    for row in json.loads(captions.read_text()) if isinstance(captions, Path) else captions:
        pairs = {(colour, shape) for colour, shape, _ in named_groups(row["caption"])}
        if not pairs:
            raise ValueError(f"{where}: image {row['image']}: the caption {row['caption']!r} names no pair")
        drawn.setdefault(row["image"], set()).update(pairs)
    rng = random.Random(f"presence_questions:{seed}")
    rows, question_id = [], first_id
    for image, present in sorted(drawn.items()):
        near = sorted(
            (colour, shape)
            for colour in COLOURS
            for shape in SHAPES
            if (colour, shape) not in present and any(colour == c or shape == s for c, s in present)
        )
        asked = [(pair, "yes") for pair in sorted(present)] + [(pair, "no") for pair in rng.sample(near, len(present))]
        for (colour, shape), answer in asked:
            rows.append({
                "question_id": question_id, "question": f"is there a {colour} {shape}?", "image": image,
                "answer": [answer] * 10,
            })  # fmt: skip
            question_id += 1
    return rows


def with_views(rows: list[dict], views: dict[str, list[str]], first_id: int) -> list[dict]:
    """``rows`` and a copy of each for every rescaled view of its image (the answers stay true, see
    ``rescaled_views``), ids from ``first_id``."""
    copies = [{**row, "image": view} for row in rows for view in views.get(row["image"], [])]
    return rows + [{**row, "question_id": first_id + i} for i, row in enumerate(copies)]
