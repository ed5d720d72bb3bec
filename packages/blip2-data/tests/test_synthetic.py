"""synthetic_shapes: deterministic, disjoint splits, read by the COCO loaders, captions that say what is drawn."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from blip2_data import load_dataset
from blip2_data.synthetic import BACKGROUNDS, COLOURS, fingerprint, write_synthetic_shapes

SIZES = {"train": 40, "val": 10, "test": 12, "shifted": 10}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    return root, write_synthetic_shapes(root, SIZES, seed=3)


def test_same_seed_writes_the_same_bytes_and_another_seed_does_not(shapes, tmp_path):
    root, _ = shapes
    write_synthetic_shapes(tmp_path / "again", SIZES, seed=3)
    write_synthetic_shapes(tmp_path / "other", SIZES, seed=4)
    assert fingerprint(tmp_path / "again") == fingerprint(root)
    assert fingerprint(tmp_path / "other") != fingerprint(root)


def test_splits_share_no_image_id_file_or_pixels(shapes):
    root, files = shapes
    seen_ids, seen_pixels = {}, {}
    for split, paths in files.items():
        rows = json.loads(Path(paths["captions"]).read_text())
        images = {row["image"]: int(row["image_id"]) for row in rows}
        assert len(images) == SIZES[split]
        for name, image_id in images.items():
            digest = hashlib.sha256(Image.open(Path(paths["image_root"]) / name).tobytes()).hexdigest()
            assert seen_ids.setdefault(image_id, split) == split, f"image id {image_id} in two splits"
            assert seen_pixels.setdefault(digest, split) == split, f"{name}: same pixels as an image of another split"


def test_the_coco_loaders_read_every_split(shapes):
    root, files = shapes
    (train,) = load_dataset("synthetic_shapes", [[files["train"]["image_root"], files["train"]["captions"], "train"]])
    assert len(train) == 3 * SIZES["train"] and Path(train[0]["image"]).is_file()
    (test,) = load_dataset("custom_caption", [[files["test"]["image_root"], files["test"]["captions"], "test"]])
    assert len(test) == SIZES["test"] and len(test[0]["captions"]) == 3
    vqa_files = [files["test"]["questions"], files["test"]["annotations"]]
    (vqa,) = load_dataset("coco_vqa", [[files["test"]["image_root"], vqa_files, "val"]])
    assert Path(vqa[0]["image"]).is_file() and len(vqa[0]["answers"]) == 10


def test_without_data_files_the_dataset_is_written_once_into_the_cache(tmp_path, monkeypatch):
    import blip2_data.synthetic as synthetic

    monkeypatch.setattr(synthetic, "DEFAULT_SIZES", {"train": 5, "val": 2, "test": 2, "shifted": 2})
    (train,) = load_dataset("synthetic_shapes", cache_dir=tmp_path)
    assert len(train) == 15
    before = fingerprint(tmp_path)
    load_dataset("synthetic_shapes", cache_dir=tmp_path, splits=["test"])
    assert fingerprint(tmp_path) == before


def test_single_group_captions_name_the_colour_that_is_drawn(shapes):
    # An independent look at the pixels: the most common non-background colour is the caption's colour.
    root, files = shapes
    palette = {**COLOURS, **BACKGROUNDS}
    names, values = list(palette), np.array(list(palette.values()), dtype=float)
    checked = 0
    for row in json.loads(Path(files["test"]["captions"]).read_text()):
        first = row["caption"][0].split()
        if "above" in first:
            continue
        pixels = np.asarray(Image.open(Path(files["test"]["image_root"]) / row["image"]), dtype=float).reshape(-1, 3)
        nearest = np.argmin(((pixels[:, None, :] - values[None]) ** 2).sum(-1), axis=1)
        counts = {names[i]: int((nearest == i).sum()) for i in range(len(names)) if names[i] in COLOURS}
        assert max(counts, key=counts.get) == first[1], row
        checked += 1
    assert checked >= 2


def test_vqa_files_are_the_official_format_with_ten_answers(shapes):
    _, files = shapes
    questions = json.loads(Path(files["val"]["questions"]).read_text())
    annotations = json.loads(Path(files["val"]["annotations"]).read_text())
    assert questions["data_subtype"] == "shapes_val"
    assert [q["question_id"] for q in questions["questions"]] == [a["question_id"] for a in annotations["annotations"]]
    assert all(len(a["answers"]) == 10 for a in annotations["annotations"])
    assert {a["answer_type"] for a in annotations["annotations"]} == {"other", "number", "yes/no"}
