"""More training pictures for stages 1 and 2 and the VQA step: scenes drawn beyond the dataset's training split.

synthetic_shapes' 3000 training pictures show about a third of the colour-shape-count-background combinations a
two-group scene can have (18 x 17 ordered pairs, 9 count pairs, 3 backgrounds), so most test pictures show a
combination that no training picture does, and the Q-Former has to bind each colour to its shape in a scene it
never saw. Stage 2's 2000 steps of 32 read every training caption seven times; a model can then answer from the
pictures it has met instead of from what is drawn. These scenes come from the same generator (its training
distribution) and never show what a val, test or shifted picture shows (``unseen_scenes``), as the LM's extra
text and the ViT's extra images do. A share of them is drawn in the ViT's ``TRAINING_STYLE`` (other canvases,
anti-aliased, turned, jittered), so that the later steps too see pictures drawn otherwise. Each comes with its
three captions and the dataset's questions, so captions and answers stay true.
"""

from __future__ import annotations

import json
import random
from itertools import islice
from pathlib import Path

from blip2_data.synthetic import questions, render, ten_answers

from ..drawn_differently import render_differently
from .pretrain_vit import TRAINING_STYLE
from .training_questions import presence_questions
from .unseen_scenes import unseen_scenes

FOLDER = "shapes_more"  # beside the dataset's shapes_<split> folders under its image root


def write_more_scenes(
    image_root: Path,
    captions_file: Path,
    count: int,
    held_out: set[tuple[str, ...]],
    out_captions: Path,
    varied: float = 0.0,
    presence: bool = False,
    seed: int = 0,
) -> list[dict]:
    """Draw ``count`` scenes into ``image_root/shapes_more/``; write ``out_captions``: the training rows of
    ``captions_file`` and three rows for each new picture (blip2-data's caption rows). ``varied``: the share drawn
    in ``TRAINING_STYLE``; ``presence``: with ``training_questions``' "is there" questions about them too. Returns
    the new pictures' question rows as ``vqa_training_file`` writes them (image, question, ten answers;
    ``question_id`` left for the caller to number)."""
    rows = json.loads(Path(captions_file).read_text())
    next_id = 1 + max(int(row["image_id"]) for row in rows)
    styles = random.Random(f"more_scenes:{seed}:style")
    (Path(image_root) / FOLDER).mkdir(parents=True, exist_ok=True)
    more, question_rows = [], []
    for i, (scene, texts, rng) in enumerate(islice(unseen_scenes("more_scenes", held_out, seed), count)):
        name = f"{FOLDER}/more_{i:06d}.jpg"
        image = render_differently(scene, styles, TRAINING_STYLE) if styles.random() < varied else render(scene)
        image.save(Path(image_root) / name, "JPEG", quality=95)
        more += [{"image": name, "caption": text, "image_id": str(next_id + i)} for text in texts]
        for question, answer, _, _ in questions(scene, rng):
            question_rows.append({"question": question, "image": name, "answer": ten_answers(answer)})
    Path(out_captions).write_text(json.dumps(rows + more))
    if presence:
        asked = presence_questions(more, first_id=0, seed=seed)
        question_rows += [{k: row[k] for k in ("question", "image", "answer")} for row in asked]
    return question_rows
