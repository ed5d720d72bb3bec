"""What the service says about itself without showing its file system: a local path becomes its last folder's name.

A model or gallery folder named by path (``/home/me/models/blip2-mine``) tells a client where the server's files
are and who runs it; its last component (``blip2-mine``) says which model it is. Hub ids and known names
(``Salesforce/blip2-opt-2.7b``, ``blip2-shapes``) are not paths and stay as they are.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

# the fields of Predictor.describe() that may hold a local path
PATH_FIELDS = ("name", "llm")


def public_name(name: str | os.PathLike | None) -> str | None:
    """``name`` if it is not a local path, else the last component of the path."""
    if name is None:
        return None
    text = os.fspath(name)
    path = Path(text).expanduser()
    if path.is_absolute() or text.startswith((".", "~")) or os.sep in text and path.exists():
        return path.name or text.strip(os.sep) or "."
    return text


def public_description(description: dict[str, Any]) -> dict[str, Any]:
    """``Predictor.describe()`` with every path in it reduced to its last component."""
    return {key: public_name(value) if key in PATH_FIELDS else value for key, value in description.items()}
