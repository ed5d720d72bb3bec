"""Whether a retrained model may replace the shipped one: only when the figures its model card reports improve.

Every retraining so far committed a new ``model.safetensors``; git keeps each one forever. So a new model takes
the shipped one's place only if none of the headline figures below falls and at least one rises; otherwise it
stays in the work folder and the comparison says which figures fell.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# (label, path into scores.json's "metrics"): every figure the model card leads with; higher is better for all.
HEADLINE_FIGURES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("caption CIDEr", ("caption", "CIDEr")),
    ("captions with exactly the drawn pairs %", ("caption", "names_colours_and_shapes", "exact_colour_shape_pairs_pct")),
    ("captions: ... and counts %", ("caption", "names_colours_and_shapes", "exact_pairs_and_counts_pct")),
    ("VQA accuracy %", ("vqa", "overall")),
    ("VQA is there %", ("vqa", "perQuestionType", "is there")),
    ("VQA what color %", ("vqa", "perQuestionType", "what color")),
    ("VQA how many %", ("vqa", "perQuestionType", "how many")),
    ("retrieval image->text R@5", ("retrieval", "txt_r5")),
    ("retrieval text->image R@5", ("retrieval", "img_r5")),
    ("shifted: captions with exactly the drawn pairs %",
     ("shifted_caption", "names_colours_and_shapes", "exact_colour_shape_pairs_pct")),
    ("shifted: ... and counts %", ("shifted_caption", "names_colours_and_shapes", "exact_pairs_and_counts_pct")),
    ("drawn differently: captions with exactly the drawn pairs %",
     ("drawn_differently", "exact_colour_shape_pairs_pct")),
    ("drawn differently: ... and counts %", ("drawn_differently", "exact_pairs_and_counts_pct")),
    ("drawn differently: colour answers %", ("drawn_differently", "colour_answers_right_pct")),
)  # fmt: skip


@dataclass(frozen=True)
class FigureChange:
    label: str
    shipped: float | None
    new: float | None

    @property
    def fell(self) -> bool:
        return self.shipped is not None and (self.new is None or self.new < self.shipped)

    @property
    def rose(self) -> bool:
        return self.new is not None and (self.shipped is None or self.new > self.shipped)


def _figure(metrics: dict[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = metrics
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return float(value)


def compare(shipped: dict[str, Any], new: dict[str, Any]) -> list[FigureChange]:
    """Each headline figure of two ``scores.json`` records, shipped beside new."""
    old_metrics, new_metrics = shipped.get("metrics", {}), new.get("metrics", {})
    return [
        FigureChange(label, _figure(old_metrics, path), _figure(new_metrics, path)) for label, path in HEADLINE_FIGURES
    ]


def improves(changes: list[FigureChange]) -> bool:
    return not any(change.fell for change in changes) and any(change.rose for change in changes)


def format_changes(changes: list[FigureChange]) -> str:
    def show(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    rows = [f"{'figure':<52} {'shipped':>8} {'new':>8}"]
    for change in changes:
        mark = "  fell" if change.fell else ("  rose" if change.rose else "")
        rows.append(f"{change.label:<52} {show(change.shipped):>8} {show(change.new):>8}{mark}")
    return "\n".join(rows)


def replace_if_better(candidate: Path, shipped: Path, anyway: bool = False) -> tuple[bool, str]:
    """Move the model in ``candidate`` over ``shipped`` when its figures improve (or ``anyway``); returns whether
    it did and the comparison. The weights and the card are replaced together, so one commit holds both."""
    new = json.loads((candidate / "scores.json").read_text())
    if "metrics" not in new:
        raise ValueError(f"{candidate / 'scores.json'}: no figures (trained with --skip-eval); nothing to compare")
    old_scores = shipped / "scores.json"
    old = json.loads(old_scores.read_text()) if old_scores.is_file() else {}
    changes = compare(old, new)
    table = format_changes(changes)
    if not (anyway or improves(changes)):
        return False, table
    staging = shipped.with_name(shipped.name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(candidate, staging)
    shutil.rmtree(shipped, ignore_errors=True)
    staging.rename(shipped)
    return True, table
