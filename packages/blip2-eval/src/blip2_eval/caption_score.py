"""``caption-score``: BLEU-1..4, METEOR, ROUGE-L, CIDEr (and SPICE when it can run) with pycocoevalcap.

The same pipeline as pycocoevalcap's ``COCOEvalCap.evaluate`` (PTB tokenisation, then each scorer over the
images in the ground truth's order), with two differences that only turn silent problems into errors: every
ground-truth image must have exactly one caption, and captions for images not in the ground truth are refused
(``COCOEvalCap`` scores only the images present in the results, so a half-finished run would look fine).

SPICE needs Stanford CoreNLP 3.6.0, which pycocoevalcap downloads on first use; when those jars are absent
(offline machines) SPICE is listed in ``skipped`` with the reason instead of failing the whole evaluation.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .json_files import EvalInputError, field, int_id, read_json, read_list

CORENLP_JARS = ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")
METRIC_NAMES = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr", "SPICE")


def read_caption_results(path: str | os.PathLike) -> dict[int, str]:
    """``[{"image_id", "caption"}]`` -> ``{image_id: caption}``; a repeated image id is an error."""
    captions: dict[int, str] = {}
    for i, row in enumerate(read_list(path, "results")):
        where = f"{path}, row {i}"
        image_id = int_id(row, "image_id", where)
        caption = field(row, "caption", str, where)
        if image_id in captions:
            raise EvalInputError(f"{where}: image_id {image_id} has a caption already (one caption per image)")
        captions[image_id] = caption
    return captions


def read_coco_captions(path: str | os.PathLike) -> dict[int, list[str]]:
    """COCO caption ground truth (``{"images": [...], "annotations": [{"image_id", "caption"}]}``) as
    ``{image_id: [captions]}`` in the order of ``images``."""
    data = read_json(path, "annotations")
    if not isinstance(data, dict) or "annotations" not in data:
        raise EvalInputError(f"{path}: expected COCO caption format with 'images' and 'annotations'")
    references: dict[int, list[str]] = {}
    for i, image in enumerate(read_list(path, "annotations", key="images") if "images" in data else []):
        references[int_id(image, "id", f"{path}, images[{i}]")] = []
    if not isinstance(data["annotations"], list):
        raise EvalInputError(f"{path}: 'annotations' should be a list, got {type(data['annotations']).__name__}")
    for i, row in enumerate(data["annotations"]):
        where = f"{path}, annotations[{i}]"
        image_id = int_id(row, "image_id", where)
        references.setdefault(image_id, []).append(field(row, "caption", str, where))
    empty = [image_id for image_id, captions in references.items() if not captions]
    if empty:
        raise EvalInputError(f"{path}: {len(empty)} image(s) have no reference caption: {empty[:20]}")
    return references


def check_images(captions: Mapping[int, str], references: Mapping[int, Sequence[str]], source: str) -> None:
    missing = [i for i in references if i not in captions]
    extra = [i for i in captions if i not in references]
    problems = []
    if missing:
        problems.append(f"{len(missing)} image(s) of the ground truth have no caption: {missing[:20]}")
    if extra:
        problems.append(f"{len(extra)} caption(s) are for images not in the ground truth: {extra[:20]}")
    if problems:
        raise EvalInputError(f"{source}: " + "; ".join(problems))


def spice_unavailable_reason() -> str | None:
    """Why SPICE cannot run here, or None when its CoreNLP jars are in place."""
    import pycocoevalcap.spice.spice as spice_module

    lib = Path(spice_module.__file__).parent / "lib"
    absent = [jar for jar in CORENLP_JARS if not (lib / jar).is_file()]
    if absent:
        return (
            f"SPICE needs Stanford CoreNLP 3.6.0 ({', '.join(absent)}) in {lib}; pycocoevalcap downloads it from "
            "nlp.stanford.edu on first use, which this machine cannot reach"
        )
    return None


def score_captions(
    captions: Mapping[int, str], references: Mapping[int, Sequence[str]], spice: bool = True, source: str = "results"
) -> dict[str, Any]:
    """``{"Bleu_1", ..., "CIDEr", ["SPICE"], "num_images", "skipped": {metric: reason}}``.

    ``references`` order sets the scoring order (as the ground-truth file's ``images``).
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    check_images(captions, references, source)
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({i: [{"caption": c} for c in refs] for i, refs in references.items()})
    res = tokenizer.tokenize({i: [{"caption": captions[i]}] for i in references})
    scorers: list[tuple[Any, Sequence[str]]] = [
        (Bleu(4), ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4")),
        (Meteor(), ("METEOR",)),
        (Rouge(), ("ROUGE_L",)),
        (Cider(), ("CIDEr",)),
    ]
    skipped: dict[str, str] = {}
    if spice:
        reason = spice_unavailable_reason()
        if reason is None:
            from pycocoevalcap.spice.spice import Spice

            scorers.append((Spice(), ("SPICE",)))
        else:
            skipped["SPICE"] = reason
    else:
        skipped["SPICE"] = "not asked for (--no-spice)"
    metrics: dict[str, Any] = {}
    for scorer, names in scorers:
        try:
            score, _ = scorer.compute_score(gts, res)
        except Exception as error:  # SPICE's Java side breaks on newer JVMs: report, keep the other metrics
            if names != ("SPICE",):
                raise
            skipped["SPICE"] = f"SPICE failed: {type(error).__name__}: {error}"
            continue
        scores = score if isinstance(score, list) else [score]
        metrics.update({name: float(value) for name, value in zip(names, scores)})
    metrics["num_images"] = len(references)
    metrics["skipped"] = skipped
    return metrics


def score_caption_files(
    results: str | os.PathLike, annotations: str | os.PathLike, spice: bool = True
) -> dict[str, Any]:
    """``caption-score``'s work: both files read and checked, then :func:`score_captions`."""
    return score_captions(read_caption_results(results), read_coco_captions(annotations), spice, source=str(results))
