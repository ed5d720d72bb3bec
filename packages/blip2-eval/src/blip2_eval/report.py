"""The summary table printed at the end of an evaluation or a scoring run."""

from __future__ import annotations

from typing import Any


def flatten(metrics: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows = []
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows.extend(flatten(value, name + "/"))
        else:
            rows.append((name, value))
    return rows


def format_table(metrics: dict[str, Any]) -> str:
    rows = [(name, f"{value:.4f}" if isinstance(value, float) else str(value)) for name, value in flatten(metrics)]
    if not rows:
        return "(no metrics)"
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
