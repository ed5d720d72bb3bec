"""A results file that survives being killed: JSON Lines or CSV, one whole row per line, appended and synced.

A run killed at any moment leaves complete rows plus at most one partial last line; opening the file again
cuts that line off (its image is simply done again), so a rerun of the same command finishes the file with
each image once, as an uninterrupted run would have written it.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

FORMATS = {".jsonl": "jsonl", ".csv": "csv"}


class ResultFile:
    """Rows keyed by ``image``. ``done`` holds the images already in the file when it was opened."""

    def __init__(self, path: str | os.PathLike, columns: Sequence[str]) -> None:
        self.path = Path(path)
        self.format = FORMATS.get(self.path.suffix.lower())
        if self.format is None:
            raise ValueError(f"{self.path}: the output must end in .jsonl or .csv")
        self.columns = list(columns)
        self.done: dict[str, dict[str, Any]] = {}
        self._file: Any = None

    def __enter__(self) -> ResultFile:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        complete = self._repair()
        rows = self._parse(complete)
        self.done = {row["image"]: row for row in rows}
        self._file = open(self.path, "ab")
        if self.format == "csv" and not complete:
            self._write([self._csv_line(self.columns)])

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def failed(self) -> list[str]:
        return [image for image, row in self.done.items() if row.get("error")]

    def drop_failed(self) -> int:
        """Rewrite the file without its error rows (atomically), so that those images are tried again."""
        failed = set(self.failed())
        if not failed:
            return 0
        self.close()
        keep = [row for image, row in self.done.items() if image not in failed]
        temporary = self.path.with_name(self.path.name + ".tmp")
        with open(temporary, "wb") as file:
            lines = [self._csv_line(self.columns)] if self.format == "csv" else []
            file.write(b"".join(lines + [self._line(row) for row in keep]))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self.path)
        self.open()
        return len(failed)

    def append(self, rows: Iterable[dict[str, Any]]) -> None:
        """Write ``rows`` as whole lines and sync them to disk before returning."""
        lines = []
        for row in rows:
            lines.append(self._line(row))
            self.done[row["image"]] = row
        self._write(lines)

    def _write(self, lines: list[bytes]) -> None:
        self._file.write(b"".join(lines))
        self._file.flush()
        os.fsync(self._file.fileno())

    def _line(self, row: dict[str, Any]) -> bytes:
        if self.format == "jsonl":
            return (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")
        # one physical line per row, so that a cut can only ever damage the last one
        return self._csv_line([_one_line(row.get(column, "")) for column in self.columns])

    @staticmethod
    def _csv_line(values: Sequence[Any]) -> bytes:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow(values)
        return buffer.getvalue().encode("utf-8")

    def _repair(self) -> str:
        """The file's complete lines; a partial last line (a run killed mid-write) is cut off the file."""
        if not self.path.exists():
            return ""
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            with open(self.path, "r+b") as file:
                file.truncate(end)
                os.fsync(file.fileno())
        return data[:end].decode("utf-8")

    def _parse(self, text: str) -> list[dict[str, Any]]:
        if not text:
            return []
        if self.format == "jsonl":
            rows = []
            for number, line in enumerate(text.splitlines(), 1):
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    raise ValueError(f"{self.path}, line {number}: not a JSON row; is this a results file?") from None
                if not isinstance(rows[-1], dict) or "image" not in rows[-1]:
                    raise ValueError(f"{self.path}, line {number}: a row without 'image'; is this a results file?")
            return rows
        reader = csv.reader(io.StringIO(text))
        header = next(reader)
        if header != self.columns:
            raise ValueError(
                f"{self.path} has the columns {header}, this run writes {self.columns}: "
                "write to another file (a caption run and a question run cannot share one)"
            )
        return [{k: v for k, v in zip(header, values) if v != ""} for values in reader]


def _one_line(value: Any) -> str:
    return " ".join(str(value).splitlines())
