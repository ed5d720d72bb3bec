"""Reading the JSON files the scorers take, with errors that name the file and the row."""

from __future__ import annotations

import json
import os
from typing import Any


class EvalInputError(ValueError):
    """A results or ground-truth file that cannot be scored, with the file (and row) named."""


def read_json(path: str | os.PathLike, what: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise EvalInputError(f"{what} file not found: {path}") from None
    except json.JSONDecodeError as e:
        raise EvalInputError(
            f"{what} file {path}: not valid JSON at line {e.lineno} column {e.colno}: {e.msg}"
        ) from None


def read_list(path: str | os.PathLike, what: str, key: str | None = None) -> list:
    """A JSON list, or the list under ``key`` of a JSON object (``{"questions": [...]}``)."""
    data = read_json(path, what)
    if key is not None and isinstance(data, dict):
        if key not in data:
            raise EvalInputError(f"{what} file {path}: no {key!r} key (keys: {sorted(data)[:10]})")
        data = data[key]
    if not isinstance(data, list):
        raise EvalInputError(f"{what} file {path}: expected a JSON list, got {type(data).__name__}")
    return data


def field(row: Any, key: str, kinds: type | tuple[type, ...], where: str) -> Any:
    """``row[key]`` checked for type; ``where`` is "file, row N" for the message."""
    if not isinstance(row, dict):
        raise EvalInputError(f"{where}: expected a JSON object, got {type(row).__name__}: {str(row)[:80]}")
    if key not in row:
        raise EvalInputError(f"{where}: missing key {key!r} (keys: {sorted(row)})")
    value = row[key]
    if not isinstance(value, kinds) or isinstance(value, bool):
        names = kinds.__name__ if isinstance(kinds, type) else " or ".join(k.__name__ for k in kinds)
        raise EvalInputError(f"{where}: key {key!r} should be {names}, got {type(value).__name__}: {str(value)[:80]}")
    return value


def int_id(row: Any, key: str, where: str) -> int:
    """An id given as an int or a string of digits (both occur in the wild)."""
    value = field(row, key, (int, str), where)
    if isinstance(value, str):
        if not value.strip().lstrip("-").isdigit():
            raise EvalInputError(f"{where}: key {key!r} should be an integer id, got {value!r}")
        value = int(value)
    return value
