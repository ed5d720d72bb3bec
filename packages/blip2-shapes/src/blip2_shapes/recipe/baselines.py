"""What the demo model's figures are compared with: chance levels, and the shifted-split caption check.

Chance is measured with the same scorers where a guess can be written down (``blip2-eval caption-score`` and
``vqa-score`` on results files made here), and computed where it has a closed form (retrieval recall).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections import Counter, defaultdict
from math import comb
from pathlib import Path

from blip2_data.synthetic import ANSWER_SETS, COLOURS, SHAPES


def _score(command: list[str]) -> dict:
    tool = Path(sys.executable).with_name("blip2-eval")
    out = subprocess.run(
        [str(tool) if tool.exists() else "blip2-eval", *command, "--json"], capture_output=True, text=True
    )
    if out.returncode != 0:
        raise SystemExit(f"blip2-eval {command[0]} failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout)


def caption_chance(files: dict, folder: Path, seed: int = 0) -> dict:
    """Each test image captioned with the first caption of a random training image, scored as the model is."""
    rng = random.Random(seed)
    train = [row["caption"] for row in json.loads(Path(files["train"]["captions"]).read_text())[::3]]
    test = json.loads(Path(files["test"]["captions"]).read_text())
    ground_truth = {
        "images": [{"id": row["image_id"], "file_name": row["image"]} for row in test],
        "annotations": [
            {"image_id": row["image_id"], "id": i * 10 + j, "caption": c}
            for i, row in enumerate(test)
            for j, c in enumerate(row["caption"])
        ],
    }
    results = [{"image_id": row["image_id"], "caption": rng.choice(train)} for row in test]
    (folder / "caption_gt.json").write_text(json.dumps(ground_truth))
    (folder / "caption_random_train_caption.json").write_text(json.dumps(results))
    scores = _score(
        ["caption-score", "--no-spice", "--results", str(folder / "caption_random_train_caption.json"),
         "--annotations", str(folder / "caption_gt.json")]
    )  # fmt: skip
    return {"how": "each test image given the caption of a random training image", **scores}


def vqa_chance(files: dict, folder: Path) -> dict:
    """Uniform guessing within each question type (closed form) and the most common training answer of the
    type (scored by ``blip2-eval vqa-score``)."""
    test = files["test"]
    annotations = json.loads(Path(test["annotations"]).read_text())["annotations"]
    by_type = Counter(a["question_type"] for a in annotations)
    uniform = {t: 100.0 / len(ANSWER_SETS[t]) for t in by_type}
    overall = sum(uniform[t] * n for t, n in by_type.items()) / len(annotations)
    train_answers: dict[str, Counter] = defaultdict(Counter)
    for a in json.loads(Path(files["train"]["annotations"]).read_text())["annotations"]:
        train_answers[a["question_type"]][a["multiple_choice_answer"]] += 1
    majority = {t: c.most_common(1)[0][0] for t, c in train_answers.items()}
    results = [{"question_id": a["question_id"], "answer": majority[a["question_type"]]} for a in annotations]
    (folder / "vqa_majority_answer.json").write_text(json.dumps(results))
    scored = _score(
        ["vqa-score", "--results", str(folder / "vqa_majority_answer.json"), "--annotations", test["annotations"],
         "--questions", test["questions"]]
    )  # fmt: skip
    return {"uniform_overall": round(overall, 2), "uniform_per_type": uniform, "majority_answer": scored}


def retrieval_chance(files: dict, captions_per_image: int = 3) -> dict:
    """Recall@k of a random ranking: text->image k/N; image->text P(one of its captions in the top k)."""
    images = len(json.loads(Path(files["test"]["captions"]).read_text()))
    texts = images * captions_per_image
    recall = {}
    for k in (1, 5, 10):
        recall[f"txt_r{k}"] = 100 * (1 - comb(texts - captions_per_image, k) / comb(texts, k))
        recall[f"img_r{k}"] = 100 * min(k, images) / images
    return {k: round(v, 2) for k, v in recall.items()}


def _recall_among_ties(tied: int, own: int, k: int) -> float:
    """P(one of ``own`` items is in the top ``k``) when they sit, in random order, among ``tied`` equally good ones
    at the top of the ranking."""
    return 1.0 if tied - own < k else 1 - comb(tied - own, k) / comb(tied, k)


def retrieval_ceiling(files: dict) -> dict:
    """Recall@k of a ranking that knows each image's content exactly: captions say what is drawn, not where, so
    two test images with the same groups and background have the same three captions, and a caption such as
    "a red circle above two blue squares" is true of every background. Such ties are ranked in random order;
    this is what a perfect model can expect (rounded, in %), and how many images share all or one of their
    captions with another test image."""
    rows = json.loads(Path(files["test"]["captions"]).read_text())
    texts = Counter(caption for row in rows for caption in row["caption"])
    per_image = [set(row["caption"]) for row in rows]
    # image -> text: the texts equal to one of its own captions, its own among them
    tied = [sum(texts[c] for c in captions) for captions in per_image]
    # text -> image: the images that have this caption, its own among them
    holders = Counter(caption for captions in per_image for caption in captions)
    recall: dict[str, float] = {}
    for k in (1, 5, 10):
        recall[f"txt_r{k}"] = 100 * sum(_recall_among_ties(t, len(c), k) for t, c in zip(tied, per_image)) / len(rows)
        recall[f"img_r{k}"] = (
            100
            * sum(_recall_among_ties(holders[c], 1, k) for captions in per_image for c in captions)
            / sum(len(c) for c in per_image)
        )
    sets = Counter(frozenset(c) for c in per_image)
    return {
        **{key: round(value, 1) for key, value in recall.items()},
        "images": len(rows),
        "images_sharing_all_captions": sum(n for n in sets.values() if n > 1),
        "images_sharing_a_caption": sum(any(texts[c] > 1 for c in captions) for captions in per_image),
    }


def chance_levels(files: dict, folder: Path) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "caption": caption_chance(files, folder),
        "vqa": vqa_chance(files, folder),
        "retrieval": retrieval_chance(files),
        "retrieval_ceiling": retrieval_ceiling(files),
    }


def named_pairs(caption: str) -> set[tuple[str, str]]:
    """(colour, shape) pairs a caption names: a colour word directly before a shape word."""
    words = caption.lower().replace(",", " ").split()
    pairs = set()
    for before, word in zip(words, words[1:]):
        shape = word.rstrip("s") if word.rstrip("s") in SHAPES else None
        if shape and before in COLOURS:
            pairs.add((before, shape))
    return pairs


def shifted_caption_check(results_file: Path, captions_file: str) -> dict:
    """How often a generated caption names exactly the drawn (colour, shape) pairs, how often with the right counts
    too ("two red circles"), and how often exactly the drawn colours."""
    from ..drawn_differently import named_groups

    drawn_captions = {row["image_id"]: row["caption"][0] for row in json.loads(Path(captions_file).read_text())}
    results = json.loads(Path(results_file).read_text())
    exact = counted = colours = 0
    for row in results:
        caption, drawn_caption = row["caption"], drawn_captions[row["image_id"]]
        said, drawn = named_pairs(caption), named_pairs(drawn_caption)
        exact += said == drawn
        counted += named_groups(caption) == named_groups(drawn_caption)
        colours += {c for c, _ in said} == {c for c, _ in drawn}
    n = len(results)
    return {
        "images": n, "exact_colour_shape_pairs_pct": round(100 * exact / n, 1),
        "exact_pairs_and_counts_pct": round(100 * counted / n, 1), "exact_colours_pct": round(100 * colours / n, 1),
    }  # fmt: skip
