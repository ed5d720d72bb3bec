"""The files of an evaluation's output directory, and the check that a rerun uses the same settings."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .json_files import EvalInputError

SETTINGS_FILE = "settings.json"
RESULTS_FILE = "results.json"
METRICS_FILE = "metrics.json"
SHARDS_DIR = "shards"


def write_json(path: Path, data: Any) -> None:
    """Written whole or not at all (a temporary file renamed into place)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def pin_settings(output_dir: Path, settings: dict[str, Any]) -> None:
    """Write settings.json, or check that the one there (from an earlier, resumed run) says the same."""
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / SETTINGS_FILE
    settings = json.loads(json.dumps(settings))  # compared as JSON reads it back (tuples are lists there)
    if path.exists():
        before = json.loads(path.read_text(encoding="utf-8"))
        changed = sorted(k for k in set(before) | set(settings) if before.get(k) != settings.get(k))
        if changed:
            details = "; ".join(f"{k}: {before.get(k)!r} -> {settings.get(k)!r}" for k in changed)
            raise EvalInputError(
                f"{path}: the results there were made with other settings ({details}); "
                "use another --output_dir, or delete it to start again"
            )
        return
    write_json(path, settings)
