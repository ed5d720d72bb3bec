"""blip2-predict over many images: folders, globs and lists, batches, error rows, resumable JSONL and CSV files."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from blip2_core.cli.predict import main as predict_main

FAST = ["--num-beams", "2", "--max-new-tokens", "6", "--min-new-tokens", "1"]


def make_folder(root: Path, count: int, bad: bool = True) -> Path:
    """``count`` small JPEG/PNG images in nested folders, plus (``bad``) a corrupt JPEG, an empty PNG and a
    truncated JPEG, and a text file that is not taken for an image."""
    rng = np.random.RandomState(1)
    for i in range(count):
        folder = root / ("a" if i % 2 else "b") / ("deep" if i % 3 == 0 else "")
        folder.mkdir(parents=True, exist_ok=True)
        suffix = ".png" if i % 4 == 0 else ".jpg"
        Image.fromarray(rng.randint(0, 255, (40 + i, 50, 3), dtype=np.uint8)).save(folder / f"img{i:02d}{suffix}")
    if bad:
        (root / "a" / "corrupt.jpg").write_bytes(b"not a jpeg at all")
        (root / "b" / "empty.png").write_bytes(b"")
        whole = (root / "b" / "img01.jpg") if (root / "b" / "img01.jpg").exists() else next(root.rglob("*.jpg"))
        (root / "truncated.jpg").write_bytes(whole.read_bytes()[:200])
    (root / "notes.txt").write_text("not an image, and not listed\n")
    return root


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_a_folder_gives_a_row_per_image_with_error_rows_for_bad_ones(model_dir, tmp_path, capsys):
    folder = make_folder(tmp_path / "photos", 5)
    out = tmp_path / "captions.jsonl"
    code = predict_main(["--model", str(model_dir), *FAST, "--images", str(folder), "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 1  # some images failed
    rows = read_jsonl(out)
    expected = sorted(str(p) for p in folder.rglob("*") if p.suffix in (".jpg", ".png"))
    assert [row["image"] for row in rows] == expected  # recursive, sorted, the .txt left out
    errors = {Path(row["image"]).name: row["error"] for row in rows if "error" in row}
    assert set(errors) == {"corrupt.jpg", "empty.png", "truncated.jpg"}
    assert "corrupt.jpg is not a readable image" in errors["corrupt.jpg"]
    assert errors["empty.png"].endswith("empty.png is empty (0 bytes)")
    assert "truncated.jpg is not a readable image" in errors["truncated.jpg"] and "truncated" in errors["truncated.jpg"]
    assert all(row["caption"] for row in rows if "error" not in row)
    assert "8 images, 5 done, 3 failed" in err and "--retry-failed" in err
    for name in errors:
        assert f"blip2-predict: {folder}" in err and name in err

    # batched (two per pass) gives what one image at a time gives
    good = [row for row in rows if "error" not in row]
    single = tmp_path / "single.jsonl"
    args = ["--model", str(model_dir), *FAST, "--batch-size", "1", "--output", str(single)]
    assert predict_main([*args, "--images", *[row["image"] for row in good]]) == 0
    assert read_jsonl(single) == good


def test_globs_lists_and_duplicates(model_dir, tmp_path, capsys):
    folder = make_folder(tmp_path / "photos", 4, bad=False)
    listed = tmp_path / "photos" / "list.txt"
    listed.write_text("# my picks\na/img01.jpg\n\nb/deep/img00.png\n")
    out = tmp_path / "out.jsonl"
    pattern = str(folder / "**" / "*.jpg")
    args = ["--model", str(model_dir), *FAST, "--output", str(out), "--images", pattern, str(listed)]
    assert predict_main(args) == 0
    images = [row["image"] for row in read_jsonl(out)]
    jpgs = sorted(str(p) for p in folder.rglob("*.jpg"))
    assert images == jpgs + [str(folder / "b" / "deep" / "img00.png")]  # the listed jpg is not done twice
    capsys.readouterr()
    assert (
        predict_main(["--model", str(model_dir), "--images", str(tmp_path / "nothing*.jpg"), "--output", "x.csv"]) == 2
    )
    assert "nothing*.jpg: the pattern matches no files" in capsys.readouterr().err
    assert predict_main(["--model", str(model_dir), "--images", str(tmp_path / "missing")]) == 2
    assert "missing: no such file, folder or list of images" in capsys.readouterr().err


def test_csv_with_a_question_resumes_and_retries_failed_images(model_dir, tmp_path, capsys):
    folder = make_folder(tmp_path / "photos", 3)
    out = tmp_path / "answers.csv"
    args = ["--model", str(model_dir), *FAST, "--images", str(folder), "--output", str(out), "--question", "what?"]
    assert predict_main(args) == 1
    with open(out, newline="") as file:
        table = list(csv.reader(file))
    assert table[0] == ["image", "question", "answer", "error"]
    by_name = {Path(row[0]).name: row for row in table[1:]}
    assert (
        len(table) == 1 + 6
        and by_name["corrupt.jpg"][1:3] == ["", ""]
        and "not a readable image" in by_name["corrupt.jpg"][3]
    )
    assert all(row[1] == "what?" and row[2] and row[3] == "" for name, row in by_name.items() if "img" in name)
    before = out.read_bytes()

    # the same command again: nothing to do (the model is not even loaded), the file untouched
    capsys.readouterr()
    assert predict_main(args) == 1
    assert out.read_bytes() == before
    assert "6 images, 3 done, 3 failed (6 were already in" in capsys.readouterr().err

    # a caption run cannot continue a question file
    assert predict_main(["--model", str(model_dir), "--images", str(folder), "--output", str(out)]) == 2
    assert "has the columns ['image', 'question', 'answer', 'error']" in capsys.readouterr().err

    # fix the bad images, retry them: their error rows are replaced, the others kept as they were
    good = next(folder.rglob("img*.jpg")).read_bytes()
    for name in ("a/corrupt.jpg", "b/empty.png", "truncated.jpg"):
        (folder / name).write_bytes(good)
    assert predict_main([*args, "--retry-failed"]) == 0
    with open(out, newline="") as file:
        after = list(csv.reader(file))
    assert len(after) == 7 and all(row[3] == "" and row[2] for row in after[1:])
    assert after[1:4] == [row for row in table[1:] if row[3] == ""]


def test_the_progress_bar_shows_images_per_second_and_time_left(model_dir, images, tmp_path, capsys):
    args = ["--model", str(model_dir), *FAST, "--images", *images, "--output", str(tmp_path / "o.jsonl")]
    assert predict_main([*args, "--progress", "--batch-size", "1"]) == 0
    err = capsys.readouterr().err
    assert "2/2" in err and "img/s" in err and "<00:00" in err  # rate, and elapsed<remaining


def run_cli(args, **kwargs):
    cli = Path(sys.executable).with_name("blip2-predict")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([str(cli), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def test_a_run_killed_mid_way_resumes_to_the_file_an_uninterrupted_run_writes(model_dir, tmp_path, capsys):
    folder = make_folder(tmp_path / "photos", 10)
    settings = ["--model", str(model_dir), "--images", str(folder), "--batch-size", "1", "--max-new-tokens", "20"]

    whole = tmp_path / "whole.jsonl"
    assert predict_main([*settings, "--output", str(whole)]) == 1  # the bad images fail, as in any run
    expected = whole.read_bytes()
    total = len(expected.splitlines())

    out = tmp_path / "killed.jsonl"
    process = run_cli([*settings, "--output", str(out)])
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if out.exists() and out.read_bytes().count(b"\n") >= 3:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    written = out.read_bytes()
    assert 3 <= written.count(b"\n") < total, "the run was not killed mid-way"
    assert written == expected[: len(written)]  # whole rows, each synced as it was written

    # as if killed in the middle of writing a row: half a line at the end
    with open(out, "ab") as file:
        file.write(b'{"image": "' + str(folder).encode() + b"/a/im")
    capsys.readouterr()
    assert predict_main([*settings, "--output", str(out)]) == 1  # the same command again
    assert out.read_bytes() == expected  # no duplicates, nothing lost, the partial line gone
    rows_before = written.count(b"\n")
    assert f"({rows_before} were already in" in capsys.readouterr().err


def test_a_list_of_urls_with_one_that_cannot_be_fetched(model_dir, tmp_path, capsys):
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    folder = make_folder(tmp_path / "site", 2, bad=False)
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)  # loopback only
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    listed = tmp_path / "urls.txt"
    listed.write_text(f"{base}/b/deep/img00.png\n{base}/missing.jpg\n{base}/a/img01.jpg\n")
    out = tmp_path / "out.jsonl"
    try:
        assert predict_main(["--model", str(model_dir), *FAST, "--images", str(listed), "--output", str(out)]) == 1
    finally:
        server.shutdown()
    rows = read_jsonl(out)
    assert [row["image"] for row in rows] == listed.read_text().split()
    assert rows[1] == {"image": f"{base}/missing.jpg", "error": f"cannot fetch {base}/missing.jpg (HTTPError)"}
    local = tmp_path / "local.jsonl"
    files = [str(folder / "b" / "deep" / "img00.png"), str(folder / "a" / "img01.jpg")]
    assert predict_main(["--model", str(model_dir), *FAST, "--images", *files, "--output", str(local)]) == 0
    assert [rows[0]["caption"], rows[2]["caption"]] == [row["caption"] for row in read_jsonl(local)]
