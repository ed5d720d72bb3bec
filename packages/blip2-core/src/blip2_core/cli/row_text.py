"""Result rows as text that reads back exactly, whatever a file name holds.

File names may hold newlines, tabs, quotes, U+2028 / U+2029 / U+0085 (which ``str.splitlines`` takes for line
ends) and bytes that are not UTF-8 (Python reads them as lone surrogates, ``\\udcff``). A JSON line escapes all
of these, so that only ``\\n`` ends a row; a tab-separated line for the terminal escapes them as Python would in
a string literal, so that one image is one line of two fields.
"""

from __future__ import annotations

import json
import re
from typing import Any

# what json.dumps(ensure_ascii=False) leaves raw and a reader might split on or fail to encode
_JSON_RAW = re.compile("[\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_SHORT_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}


def json_line(row: dict[str, Any]) -> str:
    """``row`` as one line of JSON (without its ``\\n``); ``json.loads`` gives ``row`` back exactly."""
    return _JSON_RAW.sub(lambda match: f"\\u{ord(match.group()):04x}", json.dumps(row, ensure_ascii=False))


def tsv_field(value: Any) -> str:
    """``value`` for one field of a tab-separated line: backslashes, tabs, line ends, other characters that do
    not print and lone surrogates escaped as in a Python string literal (``\\t``, ``\\n``, ``\\u2028``)."""
    return "".join(_escape(character) for character in str(value))


def _escape(character: str) -> str:
    if character in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[character]
    if character.isprintable():  # lone surrogates, controls and line/paragraph separators are not
        return character
    code = ord(character)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
