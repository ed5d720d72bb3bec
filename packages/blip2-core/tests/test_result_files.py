"""blip2-predict's output survives any file name: JSONL and CSV rows read back exactly, a rerun recognises the rows
it wrote (no duplicates), the terminal's lines stay one per image, and a bad --output is exit 2 without a
traceback."""

import csv
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from blip2_core.cli.predict import main as predict_main
from blip2_core.cli.result_file import ResultFile
from blip2_core.cli.row_text import json_line, tsv_field

FAST = ["--num-beams", "2", "--max-new-tokens", "4", "--min-new-tokens", "1"]
# what file names may hold: line ends of every kind, tabs, quotes, commas, backslashes ...
LINE_BREAKING = [
    "new\nline",
    "carriage\rreturn",
    "crlf\r\nend",
    "line\u2028separator",
    "paragraph\u2029separator",
    "next\x85line",
    "vertical\x0btab\x0cfeed",
    "file\x1cseparator",
    "tab\there",
    'quote"s and, commas',
    "back\\slash\\n",
    "plain",
]
NOT_UTF8 = [os.fsdecode(b"latin1-\xe9\xff"), os.fsdecode(b"\x85\xe2\x80")]  # read by Python as lone surrogates
NASTY = LINE_BREAKING + NOT_UTF8


def folder_of_nasty_names(root: Path, names=NASTY) -> list[str]:
    root.mkdir()
    rng = np.random.RandomState(3)
    for index, name in enumerate(names):
        path = os.fsencode(root / f"{name}.jpg")
        with open(path, "wb") as file:
            image = io.BytesIO()
            Image.fromarray(rng.randint(0, 255, (30 + index, 40, 3), dtype=np.uint8)).save(image, "JPEG")
            file.write(image.getvalue())
    with open(os.fsencode(root / "broken\nname.jpg"), "wb") as file:  # an error row, its message holding the name
        file.write(b"not an image")
    return sorted(str(path) for path in root.iterdir())


@pytest.mark.parametrize("names", [LINE_BREAKING, NOT_UTF8], ids=["line-breaking", "not-utf8"])
@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_any_file_name_reads_back_and_a_rerun_adds_nothing(model_dir, tmp_path, capsys, suffix, names):
    sources = folder_of_nasty_names(tmp_path / "photos", names)
    out = tmp_path / f"captions{suffix}"
    args = ["--model", str(model_dir), *FAST, "--images", str(tmp_path / "photos"), "--output", str(out)]
    assert predict_main(args) == 1  # the broken image fails, as it should
    written = out.read_bytes()
    rows = read_rows(out)
    assert sorted(row["image"] for row in rows) == sources  # every name exactly as it is on disk
    assert all(row.get("caption") for row in rows if "broken" not in row["image"])
    error = next(row["error"] for row in rows if "broken" in row["image"])
    assert "broken\nname.jpg is not a readable image" in error
    capsys.readouterr()

    for _ in range(2):  # rerun: every row recognised, nothing appended
        assert predict_main(args) == 1
        assert out.read_bytes() == written
        assert f"({len(sources)} were already in" in capsys.readouterr().err


def read_rows(path: Path) -> list[dict]:
    """The rows as another program reads them: JSON Lines split at "\\n" only, or CSV by its quoting."""
    data = path.read_bytes()
    if path.suffix == ".jsonl":
        lines = data.decode("utf-8").split("\n")  # pure UTF-8: the odd bytes are escapes
        assert lines[-1] == ""
        assert len(data.decode("utf-8").splitlines()) == len(lines) - 1  # no U+2028 or U+0085 left raw either
        return [json.loads(line) for line in lines[:-1]]
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as file:
        table = list(csv.reader(file))
    return [{key: value for key, value in zip(table[0], row) if value} for row in table[1:]]


def test_rows_round_trip_through_the_file(tmp_path):
    rows = [{"image": name, "caption": f"a caption of {name}"} for name in NASTY]
    rows.append({"image": "gone\u2028.jpg", "error": "gone\u2028.jpg: no image file\nat all"})
    for suffix in (".jsonl", ".csv"):
        path = tmp_path / f"rows{suffix}"
        with ResultFile(path, ["image", "caption", "error"]) as output:
            output.append(rows)
        with ResultFile(path, ["image", "caption", "error"]) as again:
            assert list(again.done.values()) == rows, suffix
        # a run killed in the middle of a row: cut off on the next open, whatever the row holds
        whole = path.read_bytes()
        for cut in range(1, 40):
            path.write_bytes(
                whole
                + ResultFile(tmp_path / f"x{suffix}", ["image", "caption", "error"])._line(
                    {"image": "half\nwritten\u2028row", "caption": 'with "quotes"\n'}
                )[:cut]
            )
            with ResultFile(path, ["image", "caption", "error"]) as repaired:
                assert list(repaired.done.values()) == rows, (suffix, cut)
            assert path.read_bytes() == whole


def test_the_terminal_gets_one_line_per_image(model_dir, tmp_path, capsys):
    sources = [source for source in folder_of_nasty_names(tmp_path / "photos") if "broken" not in source]
    assert predict_main(["--model", str(model_dir), *FAST, "--image", *sources]) == 0
    lines = capsys.readouterr().out.split("\n")
    assert lines[-1] == "" and len(lines) - 1 == len(sources)
    for line, source in zip(lines, sources):
        image, caption = line.split("\t")  # two fields, whatever the name holds
        assert image == tsv_field(source) and caption
        assert len(line.splitlines()) == 1
    assert predict_main(["--model", str(model_dir), *FAST, "--json", "--image", *sources]) == 0
    out = capsys.readouterr().out
    rows = [json.loads(line) for line in out.split("\n")[:-1]]
    assert [row["image"] for row in rows] == sources and len(out.splitlines()) == len(sources)


def test_the_escapes():
    assert tsv_field("a\tb\nc\\d\u2028e\x85f\udcffg h") == "a\\tb\\nc\\\\d\\u2028e\\x85f\\udcffg h"
    assert tsv_field("plain café 猫") == "plain café 猫"
    row = {"image": "a\u2028b\x85c\ud800d\n", "caption": "é"}
    line = json_line(row)
    assert line.isascii() is False and "\u2028" not in line and "\x85" not in line and "\n" not in line
    assert json.loads(line) == row and len(line.splitlines()) == 1
    line.encode("utf-8")  # no lone surrogate left to fail on


@pytest.mark.parametrize("output", ["out.txt", "out", "captions.JSON"])
def test_an_unsupported_output_is_exit_2_with_a_message(model_dir, images, tmp_path, capsys, output):
    code = predict_main(["--model", str(model_dir), "--image", images[0], "--output", str(tmp_path / output)])
    err = capsys.readouterr().err
    assert code == 2 and "the output must end in .jsonl or .csv" in err and "Traceback" not in err
    assert not (tmp_path / output).exists()
