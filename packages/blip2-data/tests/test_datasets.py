import json
import logging

import numpy as np
import pytest
from conftest import coco_name, write_jpeg, write_json

from blip2_data import (
    BadSampleError,
    Blip2Collator,
    Blip2DataLoader,
    DatasetError,
    ImageProcessor,
    ImageProcessorConfig,
    TextProcessor,
    concat_datasets,
    load_dataset,
)

SMALL = ImageProcessor(ImageProcessorConfig(image_size=16), train=True)


def coco_files(root, split="train", name=None):
    return [[str(root / "images"), str(root / "annotations" / (name or f"coco_karpathy_{split}.json")), split]]


def test_coco_caption_train_items_like_paddlemix(coco_tree):
    (dataset,) = load_dataset("coco_caption", data_files=coco_files(coco_tree))
    assert dataset[0] == {
        "image": str(coco_tree / "images" / coco_name("val2014", 522418)),
        "image_id": 0,
        "text_input": "A woman wearing a net on her head cutting a cake. ",
    }
    # Contiguous ids in order of first appearance; both captions of coco_522418 share id 0.
    assert [dataset[i]["image_id"] for i in range(len(dataset))] == [0, 0, 1, 2, 3]
    processed = dataset.with_processors(SMALL, TextProcessor("caption"))
    item = processed[0]
    assert (
        item["image"].shape == (3, 16, 16) and item["text_input"] == "a woman wearing a net on her head cutting a cake"
    )


def test_coco_caption_eval_keeps_original_ids_and_builds_ground_truth(coco_tree):
    val, test = load_dataset(
        "coco_caption", data_files=coco_files(coco_tree, "val") + coco_files(coco_tree, "test"), splits=["val", "test"]
    )
    assert [val[i]["image_id"] for i in range(len(val))] == [522418, 184613]
    assert len(test) == 1 and val[1]["captions"][0] == "caption 0 of 184613"
    truth = val.coco_ground_truth()
    assert truth["images"] == [{"id": 522418}, {"id": 184613}]
    assert len(truth["annotations"]) == 10 and truth["annotations"][7] == {
        "image_id": 184613,
        "caption": "caption 2 of 184613",
        "id": 7,
    }


def test_vg_caption_loads_vg_not_coco(vg_tree):
    (dataset,) = load_dataset(
        "vg_caption", data_files=[[str(vg_tree / "images"), str(vg_tree / "annotations/vg_caption.json"), "train"]]
    )
    assert [dataset[i]["text_input"] for i in range(3)] == [
        "trees line the sidewalk",
        "a red car parked",
        "a cat on a sofa",
    ]
    assert [dataset[i]["image_id"] for i in range(3)] == [0, 0, 1] and dataset[2]["image"].endswith("VG_100K/2.jpg")
    with pytest.raises(DatasetError, match="only a train split"):
        load_dataset(
            "vg_caption", data_files=[[str(vg_tree / "images"), str(vg_tree / "annotations/vg_caption.json"), "val"]]
        )


def test_coco_vqa_train_answers_and_weights(vqa_tree):
    (dataset,) = load_dataset(
        "coco_vqa", data_files=[[str(vqa_tree / "images"), str(vqa_tree / "annotations/vqa_train.json"), "train"]]
    )
    first = dataset[0]
    assert first["text_input"] == "What color is the cat?" and first["question_id"] == 9001
    assert first["answers"] == ["black", "gray"] and first["weights"] == pytest.approx([0.7, 0.3])
    assert first["text_output"] == "black"
    assert [dataset[i]["image_id"] for i in range(3)] == [0, 1, 1]


def test_coco_vqa_val_from_official_files(vqa_tree):
    ann = vqa_tree / "annotations"
    (dataset,) = load_dataset(
        "coco_vqa",
        data_files=[[str(vqa_tree / "images"), str(ann / "v2_OpenEnded_mscoco_val2014_questions.json"), "val"]],
    )
    item = dataset.with_processors(SMALL, TextProcessor("question"))[1]
    assert item["question_id"] == 73001 and item["image_id"] == 73 and item["text_input"] == "is this a kitchen?"
    assert item["answers"] == ["yes"] * 10 and item["image"].shape == (3, 16, 16)
    # Without the annotations file (test-dev has none) questions still load, without answers.
    lone = ann.parent / "questions_only" / "v2_OpenEnded_mscoco_val2014_questions.json"
    lone.parent.mkdir()
    lone.write_text((ann / "v2_OpenEnded_mscoco_val2014_questions.json").read_text())
    (bare,) = load_dataset("coco_vqa", data_files=[[str(vqa_tree / "images"), str(lone), "val"]])
    assert "answers" not in bare[0] and bare[0]["image"].endswith(coco_name("val2014", 42))


def test_custom_dataset_in_karpathy_format_and_jsonl(tmp_path):
    write_jpeg(tmp_path / "imgs" / "dog.jpg")
    rows = [{"image": "dog.jpg", "caption": "My dog."}, {"image": "dog.jpg", "caption": "Still my dog."}]
    (tmp_path / "mine.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (dataset,) = load_dataset("custom", data_files=[[str(tmp_path / "imgs"), str(tmp_path / "mine.jsonl"), "train"]])
    assert len(dataset) == 2 and dataset[1]["image_id"] == 0 and dataset[1]["text_input"] == "Still my dog."


def test_combining_datasets_keeps_training_ids_distinct(coco_tree, vg_tree):
    (coco,) = load_dataset("coco_caption", data_files=coco_files(coco_tree))
    (vg,) = load_dataset(
        "vg_caption", data_files=[[str(vg_tree / "images"), str(vg_tree / "annotations/vg_caption.json"), "train"]]
    )
    both = concat_datasets([coco, vg])
    assert len(both) == 8
    assert [both[i]["image_id"] for i in range(8)] == [0, 0, 1, 2, 3, 4, 4, 5]
    assert both[7]["text_input"] == "a cat on a sofa" and "vg_caption train sample 2" in both.describe(7)


def test_unknown_name_and_bad_entries(coco_tree):
    with pytest.raises(DatasetError, match="unknown dataset 'coco_captions'"):
        load_dataset("coco_captions", data_files=coco_files(coco_tree))
    with pytest.raises(DatasetError, match="split must be one of"):
        load_dataset("coco_caption", data_files=[[str(coco_tree / "images"), "x.json", "training"]])
    with pytest.raises(DatasetError, match="annotation file not found: .*nope.json"):
        load_dataset("coco_caption", data_files=coco_files(coco_tree, name="nope.json"))


def test_malformed_json_file_names_file_and_position(coco_tree):
    bad = coco_tree / "annotations" / "broken.json"
    bad.write_text('[{"image": "a.jpg", "caption": "x"},\n {"image": ')
    with pytest.raises(DatasetError, match=r"broken.json: not valid JSON at line 2"):
        load_dataset("coco_caption", data_files=coco_files(coco_tree, name="broken.json"))


def test_missing_key_and_bad_rows_name_file_and_row_or_are_skipped(coco_tree, caplog):
    rows = json.loads((coco_tree / "annotations/coco_karpathy_train.json").read_text())
    rows[2] = {"image": coco_name("train2014", 9)}  # no caption
    rows[3]["caption"] = 7
    write_json(coco_tree / "annotations/bad.json", rows)
    with pytest.raises(DatasetError, match=r"bad.json, row 2: missing key 'caption'"):
        load_dataset("coco_caption", data_files=coco_files(coco_tree, name="bad.json"))
    with caplog.at_level(logging.WARNING):
        (dataset,) = load_dataset(
            "coco_caption", data_files=coco_files(coco_tree, name="bad.json"), skip_bad_samples=True
        )
    assert len(dataset) == 3 and len(dataset.skipped_rows) == 2
    assert "row 3: key 'caption' should be str, got int" in dataset.skipped_rows[1]
    assert "skipped 2 of 5 rows" in caplog.text


def test_bad_jsonl_line_and_empty_dataset(tmp_path):
    write_jpeg(tmp_path / "imgs" / "a.jpg")
    (tmp_path / "a.jsonl").write_text('{"image": "a.jpg", "caption": "ok"}\n{"image": "a.jpg", "capt\n')
    files = [[str(tmp_path / "imgs"), str(tmp_path / "a.jsonl"), "train"]]
    with pytest.raises(DatasetError, match=r"a.jsonl, line 2: not valid JSON"):
        load_dataset("custom", data_files=files)
    assert len(load_dataset("custom", data_files=files, skip_bad_samples=True)[0]) == 1
    write_json(tmp_path / "empty.json", [])
    with pytest.raises(DatasetError, match=r"no samples in .*empty.json \(it has no rows\)"):
        load_dataset("custom", data_files=[[str(tmp_path / "imgs"), str(tmp_path / "empty.json"), "train"]])


@pytest.fixture
def broken_coco(coco_tree):
    """Row 3's image is deleted, row 4's is a truncated JPEG."""
    (coco_tree / "images" / coco_name("train2014", 25)).unlink()
    corrupt = coco_tree / "images" / coco_name("train2014", 30)
    corrupt.write_bytes(corrupt.read_bytes()[:300])
    return coco_tree


def test_missing_and_corrupt_images_name_the_sample(broken_coco):
    (dataset,) = load_dataset("coco_caption", data_files=coco_files(broken_coco), image_processor=SMALL)
    with pytest.raises(
        BadSampleError,
        match=r"coco_caption train sample 3 \(.*coco_karpathy_train.json, row 3\): cannot load image .*000000000025.jpg",
    ):
        dataset[3]
    with pytest.raises(BadSampleError, match=r"sample 4 .*row 4\): cannot load image .*000000000030.jpg: OSError"):
        dataset[4]
    with pytest.raises(BadSampleError, match=r"sample 3 .*image not found.*\(and 0 more\)|sample 3 .*image not found"):
        load_dataset("coco_caption", data_files=coco_files(broken_coco), check_images=True)


def test_worker_errors_carry_the_sample(broken_coco, bert_tokenizer):
    (dataset,) = load_dataset("coco_caption", data_files=coco_files(broken_coco), image_processor=SMALL)
    loader = Blip2DataLoader(dataset, batch_size=5, collate_fn=Blip2Collator.for_qformer(bert_tokenizer), num_workers=1)
    with pytest.raises(BadSampleError, match=r"^coco_caption train sample 3 .*row 3\)"):
        list(loader)


def test_skip_bad_samples_counts_them_through_workers(broken_coco, bert_tokenizer, caplog):
    (dataset,) = load_dataset(
        "coco_caption", data_files=coco_files(broken_coco), image_processor=SMALL, skip_bad_samples=True
    )
    loader = Blip2DataLoader(dataset, batch_size=2, collate_fn=Blip2Collator.for_qformer(bert_tokenizer), num_workers=2)
    with caplog.at_level(logging.WARNING):
        batches = list(loader)
    assert sum(len(b["input_ids"]) for b in batches if "input_ids" in b) == 3
    assert len(loader.last_epoch_skipped) == 2 and "sample 3" in loader.last_epoch_skipped[0]
    assert "skipped 2 bad samples" in caplog.text


def test_loader_workers_match_single_process(coco_tree, bert_tokenizer):
    eval_processor = ImageProcessor(ImageProcessorConfig(image_size=16))
    (dataset,) = load_dataset("coco_caption", data_files=coco_files(coco_tree), image_processor=eval_processor)
    collate = Blip2Collator.for_qformer(bert_tokenizer)
    single = list(Blip2DataLoader(dataset, batch_size=2, collate_fn=collate, num_workers=0))
    workers = list(Blip2DataLoader(dataset, batch_size=2, collate_fn=collate, num_workers=2, prefetch_factor=2))
    assert len(single) == len(workers) == 3
    for a, b in zip(single, workers):
        np.testing.assert_array_equal(a["pixel_values"].numpy(), b["pixel_values"].numpy())
        assert a["input_ids"].tolist() == b["input_ids"].tolist() and a["image_id"].tolist() == b["image_id"].tolist()
    assert single[0]["pixel_values"].shape == [2, 3, 16, 16]
