"""NoCaps val, OK-VQA val, GQA testdev-balanced and Flickr30K test: formats, bad rows, offline errors."""

import json

import pytest
from conftest import coco_name, write_jpeg, write_json

from blip2_data import DatasetError, DatasetNotAvailableError
from blip2_data.dataset_sources import EVAL_SOURCES
from blip2_data.load import load_eval_dataset


def nocaps_tree(root):
    for image_id, name in [(0, "0013ea2087020901.jpg"), (1, "00223d6b27aab0e8.jpg")]:
        write_jpeg(root / "images" / name, seed=image_id)
    return write_json(
        root / "nocaps_val_4500_captions.json",
        {
            "images": [
                {"id": 0, "file_name": "0013ea2087020901.jpg", "domain": "in-domain"},
                {"id": 1, "file_name": "00223d6b27aab0e8.jpg", "domain": "out-domain"},
            ],
            "annotations": [
                {"image_id": 0, "caption": "A man on a horse.", "id": 0},
                {"image_id": 1, "caption": "A jellyfish in blue water.", "id": 1},
                {"image_id": 0, "caption": "a rider on a brown horse", "id": 2},
            ],
        },
    )


def test_nocaps_val_from_the_official_coco_format_file(tmp_path):
    annotations = nocaps_tree(tmp_path)
    dataset = load_eval_dataset("nocaps", [tmp_path / "images", annotations])
    assert (dataset.name, dataset.split, len(dataset)) == ("nocaps", "val", 2)
    assert dataset[0] == {
        "image": str(tmp_path / "images" / "0013ea2087020901.jpg"),
        "image_id": 0,
        "captions": ["A man on a horse.", "a rider on a brown horse"],
        "domain": "in-domain",
    }
    assert dataset.coco_ground_truth()["annotations"][1]["caption"] == "a rider on a brown horse"


def test_nocaps_bad_rows_name_the_file_and_row(tmp_path):
    annotations = nocaps_tree(tmp_path)
    data = json.loads(annotations.read_text())
    data["annotations"][1] = {"image_id": 1}
    write_json(annotations, data)
    with pytest.raises(DatasetError, match=r"nocaps_val_4500_captions.json, annotations\[1\]: missing key 'caption'"):
        load_eval_dataset("nocaps", [tmp_path / "images", annotations])
    # skipped instead, the image left without captions is reported too
    dataset = load_eval_dataset("nocaps", [tmp_path / "images", annotations], skip_bad_samples=True)
    assert len(dataset) == 1 and any("images[1]: image 1 has no caption" in s for s in dataset.skipped_rows)


def test_ok_vqa_val_from_the_official_files(tmp_path):
    write_jpeg(tmp_path / "images" / coco_name("val2014", 297147), seed=1)
    questions = write_json(
        tmp_path / "OpenEnded_mscoco_val2014_questions.json",
        {"questions": [{"image_id": 297147, "question": "What sport can you use this for?", "question_id": 2971475}]},
    )
    write_json(
        tmp_path / "mscoco_val2014_annotations.json",
        {"annotations": [{"question_id": 2971475, "answers": [{"answer": "race", "answer_id": 1}] * 10}]},
    )
    (dataset,) = [load_eval_dataset("ok_vqa", [tmp_path / "images", questions])]  # annotations found beside it
    assert dataset[0]["question_id"] == 2971475 and dataset[0]["answers"] == ["race"] * 10
    assert dataset[0]["image"] == str(tmp_path / "images" / coco_name("val2014", 297147))


def test_gqa_testdev_rows(tmp_path):
    write_jpeg(tmp_path / "images" / "n161313.jpg", seed=2)
    rows = [{"image": "n161313.jpg", "question": "Is it overcast?", "question_id": "201307251", "answer": "no"}]
    annotations = write_json(tmp_path / "testdev_balanced_questions.json", rows)
    dataset = load_eval_dataset("gqa", [tmp_path / "images", annotations])
    assert dataset.split == "test"
    assert dataset[0] == {
        "image": str(tmp_path / "images" / "n161313.jpg"),
        "text_input": "Is it overcast?",
        "question_id": 201307251,
        "image_id": 161313,
        "answers": ["no"],
    }
    write_json(annotations, rows + [{"image": "n2.jpg", "question_id": 3, "answer": "yes"}])
    with pytest.raises(DatasetError, match=r"testdev_balanced_questions.json, row 1: missing key 'question'"):
        load_eval_dataset("gqa", [tmp_path / "images", annotations])


def test_flickr30k_test_rows(tmp_path):
    write_jpeg(tmp_path / "images" / "flickr30k-images" / "1007129816.jpg", seed=3)
    rows = [{"image": "flickr30k-images/1007129816.jpg", "caption": ["The man with pierced ears.", "A man."]}]
    dataset = load_eval_dataset("flickr30k", [tmp_path / "images", write_json(tmp_path / "flickr30k_test.json", rows)])
    assert dataset[0]["image_id"] == 1007129816 and dataset[0]["captions"] == rows[0]["caption"]


def test_offline_lists_each_file_and_where_it_goes(tmp_path, monkeypatch):
    monkeypatch.setenv("BLIP2_OFFLINE", "1")
    for name, source in EVAL_SOURCES.items():
        with pytest.raises(DatasetNotAvailableError) as error:
            load_eval_dataset(name, cache_dir=tmp_path / name)
        message = str(error.value)
        for url in source.annotation_urls:
            assert url in message and str(tmp_path / name / "annotations" / url.rsplit("/", 1)[1]) in message
        assert ("val2014.zip" in message) if source.coco_images else (str(tmp_path / name / "images") in message)


def test_unknown_evaluation_dataset():
    with pytest.raises(DatasetError, match="unknown evaluation dataset 'vizwiz'"):
        load_eval_dataset("vizwiz", ["x", "y.json"])
