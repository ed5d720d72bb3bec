"""Scoring the gathered results of a model run with the standalone scorers (done once, on rank 0)."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

from .eval_data import EvalDataset
from .output_files import write_json

GROUND_TRUTH_FILE = "ground_truth.json"


def score_results(
    spec: EvalDataset, dataset: Any, indices: list[int], results: list[dict], files: list[str], output_dir: Path
) -> dict[str, Any]:
    if spec.task == "caption":
        return score_caption_run(dataset, indices, results, output_dir)
    return score_vqa_run(spec, dataset, indices, results, files)


def score_caption_run(dataset: Any, indices: list[int], results: list[dict], output_dir: Path) -> dict[str, Any]:
    """pycocoevalcap on the evaluated images; their ground truth is saved so ``caption-score`` can redo it."""
    from .caption_score import score_captions

    samples = [dataset.samples[i] for i in indices]
    references = {s["image_id"]: list(s["captions"]) for s in samples}
    ground_truth = {
        "images": [{"id": image_id} for image_id in references],
        "annotations": [
            {"image_id": image_id, "caption": caption, "id": n}
            for n, (image_id, caption) in enumerate((i, c) for i, caps in references.items() for c in caps)
        ],
    }
    write_json(output_dir / GROUND_TRUTH_FILE, ground_truth)
    captions = {r["image_id"]: r["caption"] for r in results}
    with contextlib.redirect_stdout(sys.stderr):  # pycocoevalcap's progress prints
        metrics = score_captions(captions, references)
        domains = images_by_domain(samples)
        if len(domains) > 1:  # NoCaps reports in-, near- and out-domain beside the overall numbers
            metrics["per_domain"] = {
                domain: score_captions({i: captions[i] for i in ids}, {i: references[i] for i in ids})
                for domain, ids in domains.items()
            }
    return metrics


def images_by_domain(samples: list[dict]) -> dict[str, list[int]]:
    """Image ids per ``domain`` (NoCaps); empty when the samples carry no domain."""
    domains: dict[str, list[int]] = {}
    for sample in samples:
        if "domain" in sample:
            domains.setdefault(sample["domain"], []).append(sample["image_id"])
    return dict(sorted(domains.items()))


def score_vqa_run(
    spec: EvalDataset, dataset: Any, indices: list[int], results: list[dict], files: list[str]
) -> dict[str, Any]:
    """Official annotations (with answer and question types) when they are among the files, else the rows'
    answers: lists by VQA accuracy, GQA's single answers by exact match."""
    from .vqa_accuracy import VqaReference, exact_match_accuracy, vqa_accuracy
    from .vqa_score import is_official_annotations, read_official_annotations

    predictions = {r["question_id"]: r["answer"] for r in results}
    asked = [dataset.samples[i]["question_id"] for i in indices]
    official = [f for f in files if str(f).endswith(".json") and is_official_annotations(f)]
    if spec.metric == "vqa_accuracy" and official:
        references = read_official_annotations(official[0])
        missing = [q for q in asked if q not in references]
        if missing:
            raise ValueError(f"{official[0]}: no annotation for question(s) {missing[:20]}")
        metrics = vqa_accuracy(predictions, {q: references[q] for q in asked})
    else:
        samples = {dataset.samples[i]["question_id"]: dataset.samples[i] for i in indices}
        unanswered = [q for q, s in samples.items() if not s.get("answers")]
        if unanswered:
            raise ValueError(f"{files}: no ground-truth answers for question(s) {unanswered[:20]}; use --no_score")
        if spec.metric == "exact_match":
            metrics = exact_match_accuracy(predictions, {q: s["answers"][0] for q, s in samples.items()})
        else:
            metrics = vqa_accuracy(predictions, {q: VqaReference(s["answers"]) for q, s in samples.items()})
    metrics["metric"] = spec.metric
    return metrics
