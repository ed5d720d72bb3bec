"""A results file that survives being killed: JSON Lines or CSV, whole rows appended and synced.

A run killed at any moment leaves complete rows plus at most one partial last row; opening the file again
cuts that row off (its image is simply done again), so a rerun of the same command finishes the file with
each image once, as an uninterrupted run would have written it.

Any file name reads back exactly as it was written, so that a rerun knows the images it did: a JSON row
escapes everything that could end a line (``row_text.json_line``), and a CSV field holding a line end is
quoted as CSV quotes it (a row may then span lines; the partial last row is found outside the quotes). Bytes of
a file name that are not UTF-8 are written as they are in CSV and as ``\\udcXX`` escapes in JSON.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .row_text import json_line

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
            return (json_line(row) + "\n").encode("utf-8")
        return self._csv_line([row.get(column, "") for column in self.columns])

    @staticmethod
    def _csv_line(values: Sequence[Any]) -> bytes:
        buffer = io.StringIO()
        texts = [str(value) for value in values]
        # csv quotes a field holding "\n" but not one holding a lone "\r", which a reader takes for a line end
        quoting = csv.QUOTE_ALL if any("\r" in text for text in texts) else csv.QUOTE_MINIMAL
        csv.writer(buffer, lineterminator="\n", quoting=quoting).writerow(texts)
        return buffer.getvalue().encode("utf-8", "surrogateescape")

    def _repair(self) -> str:
        """The file's complete rows; a partial last row (a run killed mid-write) is cut off the file."""
        if not self.path.exists():
            return ""
        data = self.path.read_bytes()
        end = _csv_rows_end(data) if self.format == "csv" else data.rfind(b"\n") + 1
        if end < len(data):
            with open(self.path, "r+b") as file:
                file.truncate(end)
                os.fsync(file.fileno())
        return data[:end].decode("utf-8", "surrogateescape")

    def _parse(self, text: str) -> list[dict[str, Any]]:
        if not text:
            return []
        if self.format == "jsonl":
            rows = []
            for number, line in enumerate(text[:-1].split("\n"), 1):  # only "\n" ends a row, never U+2028
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    raise ValueError(f"{self.path}, line {number}: not a JSON row; is this a results file?") from None
                if not isinstance(rows[-1], dict) or "image" not in rows[-1]:
                    raise ValueError(f"{self.path}, line {number}: a row without 'image'; is this a results file?")
            return rows
        reader = csv.reader(io.StringIO(text, newline=""))
        header = next(reader)
        if header != self.columns:
            raise ValueError(
                f"{self.path} has the columns {header}, this run writes {self.columns}: "
                "write to another file (a caption run and a question run cannot share one)"
            )
        return [{k: v for k, v in zip(header, values) if v != ""} for values in reader]


def _csv_rows_end(data: bytes) -> int:
    """Where the last complete CSV row ends: after the last newline with an even number of quotes before it (a
    quoted field may hold newlines; a doubled quote inside one counts twice, which keeps the parity right)."""
    end = data.rfind(b"\n")
    while end >= 0 and data.count(b'"', 0, end) % 2:
        end = data.rfind(b"\n", 0, end)
    return end + 1
