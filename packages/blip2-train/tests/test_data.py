"""Sampling, augmentation and batches: reproducible, sharded by rank, bad samples named or skipped, image ids."""

import json

import numpy as np
import paddle
import pytest
import tiny

from blip2_core import Blip2Config, Blip2Qformer
from blip2_core.loading.text_tokenizer import load_tokenizer
from blip2_data import BadSampleError, Blip2Collator, DatasetError, ImageProcessorConfig
from blip2_train.data import GlobalBatchSampler, TrainingCollator, TrainingSamples, load_training_data


def batches(sampler, epoch):
    sampler.set_epoch(epoch)
    return [[key[1] for key in batch] for batch in sampler]


def test_ranks_split_each_global_batch_of_a_seeded_permutation():
    one = GlobalBatchSampler(22, batch_size=4, num_replicas=1, rank=0, seed=5)
    ranks = [GlobalBatchSampler(22, batch_size=2, num_replicas=2, rank=r, seed=5) for r in range(2)]
    assert len(one) == len(ranks[0]) == 5  # the incomplete last global batch (2 samples) is dropped
    for epoch in (0, 1):
        global_batches = batches(one, epoch)
        for step, (a, b) in enumerate(zip(batches(ranks[0], epoch), batches(ranks[1], epoch))):
            assert a + b == global_batches[step]
        flat = [i for batch in global_batches for i in batch]
        assert len(set(flat)) == 20 and set(flat) <= set(range(22))
    assert batches(one, 0) != batches(one, 1)  # a new order every epoch
    assert batches(one, 1) == batches(GlobalBatchSampler(22, 4, 1, 0, seed=5), 1)  # reproducible from the seed
    assert batches(one, 1) != batches(GlobalBatchSampler(22, 4, 1, 0, seed=6), 1)


def test_too_little_data_for_one_global_batch_is_a_clear_error():
    with pytest.raises(ValueError, match="3 training samples cannot fill one global batch of 4"):
        GlobalBatchSampler(3, batch_size=2, num_replicas=2, rank=0, seed=0)


@pytest.fixture(scope="module")
def samples(assets):
    dataset = load_training_data(["coco_caption"], [assets["data"]], skip_bad_samples=False)
    return TrainingSamples(dataset, ImageProcessorConfig(image_size=tiny.IMAGE_SIZE), seed=1)


def test_augmentation_depends_only_on_seed_epoch_and_index(samples):
    a, b = samples[(0, 3)], samples[(0, 3)]
    np.testing.assert_array_equal(a["image"], b["image"])
    assert a["image"].shape == (3, tiny.IMAGE_SIZE, tiny.IMAGE_SIZE)
    assert not np.array_equal(a["image"], samples[(1, 3)]["image"])  # another epoch, another crop
    assert a["text_input"] == b["text_input"] and a["image_id"] == 1  # rows 2, 3 show image 1


def test_visual_genome_images_get_randaugment_as_in_laviss_recipe(assets):
    """LAVIS's pretrain_stage{1,2}.yaml: VG images through blip_image_train (RandAugment), COCO's not."""
    import random

    from blip2_data import ImageProcessor

    dataset = load_training_data(["coco_caption", "vg_caption"], [assets["data"], assets["data"]], False)
    config = ImageProcessorConfig(image_size=tiny.IMAGE_SIZE)
    samples = TrainingSamples(dataset, config, seed=1)
    half = len(dataset) // 2
    for index, rand_augment in ((2, False), (half + 2, True)):
        item = samples[(0, index)]
        expected = ImageProcessor(
            ImageProcessorConfig(image_size=tiny.IMAGE_SIZE, rand_augment=rand_augment),
            train=True,
            rng=random.Random(f"1:0:{index}"),
        )(dataset[index]["image"])
        np.testing.assert_array_equal(item["image"], expected)
    # and RandAugment changes the VG pixels for some epoch (each of its two ops applies with probability 1/2)
    image = dataset[half + 2]["image"]
    plain = [ImageProcessor(config, train=True, rng=random.Random(f"1:{e}:{half + 2}"))(image) for e in range(6)]
    assert any(not np.array_equal(samples[(e, half + 2)]["image"], plain[e]) for e in range(6))


def test_bad_samples_name_the_file_and_row_or_are_replaced_and_counted(assets, tmp_path):
    data = tiny.write_captions(tmp_path, bad_row=5, empty_caption_row=9)
    strict = TrainingSamples(load_training_data(["coco_caption"], [data], False), ImageProcessorConfig(56), seed=1)
    with pytest.raises(BadSampleError, match=r"captions\.json, row 5.*broken\.jpg.*--skip_bad_samples"):
        strict[(0, 5)]
    with pytest.raises(BadSampleError, match=r"captions\.json, row 9\): caption '!!! \.\.\.' is empty"):
        strict[(0, 9)]
    lenient = TrainingSamples(
        load_training_data(["coco_caption"], [data], True), ImageProcessorConfig(56), seed=1, skip_bad_samples=True
    )
    item = lenient[(0, 5)]
    np.testing.assert_array_equal(item["image"], lenient[(0, 6)]["image"])  # the next good sample stands in
    assert len(item["_replaced"]) == 1 and "row 5" in item["_replaced"][0]


def test_a_bad_sample_mid_epoch_stops_a_run_or_is_skipped_with_the_flag(assets, tmp_path):
    data = tiny.write_captions(tmp_path / "data", bad_row=5)
    common = [
        "stage1", "--vision_model_name_or_path", str(assets["vision"]), "--qformer_init", str(assets["bert"]),
        "--data_files", data, "--per_device_train_batch_size", "4", "--max_steps", "4", "--save_steps", "100",
        *tiny.COMMON,
    ]  # fmt: skip
    failed = tiny.train([*common, "--output_dir", str(tmp_path / "a")], tmp_path, check=False)
    assert failed.returncode != 0
    # one message, no traceback: the file, the row, the image and the flag to pass
    message = failed.stderr.strip().splitlines()[-1]
    assert message.startswith("blip2-train stage1: coco_caption train sample 5 (") and "Traceback" not in failed.stderr
    assert "captions.json, row 5" in message and "broken.jpg" in message and "--skip_bad_samples" in message
    tiny.train([*common, "--output_dir", str(tmp_path / "b"), "--skip_bad_samples"], tmp_path)
    log = (tmp_path / "b" / "train_log.jsonl").read_text()
    assert '"skipped_bad_samples": 1' in log


def test_a_malformed_annotation_row_is_one_message_naming_the_flag(assets, tmp_path):
    data = tiny.write_captions(tmp_path / "data")
    annotation = tmp_path / "data" / "captions.json"
    rows = json.loads(annotation.read_text())
    del rows[3]["caption"]
    annotation.write_text(json.dumps(rows))
    # the library names its Python option; the command line its flag
    with pytest.raises(DatasetError, match=r"captions\.json, row 3.*'caption'.*skip_bad_samples=True"):
        load_training_data(["coco_caption"], [data], skip_bad_samples=False)
    common = [
        "stage1", "--vision_model_name_or_path", str(assets["vision"]), "--qformer_init", str(assets["bert"]),
        "--data_files", data, "--per_device_train_batch_size", "4", "--max_steps", "1", *tiny.COMMON,
    ]  # fmt: skip
    failed = tiny.train([*common, "--output_dir", str(tmp_path / "a")], tmp_path, check=False)
    assert failed.returncode != 0 and "Traceback" not in failed.stderr
    message = failed.stderr.strip().splitlines()[-1]
    assert message.startswith("blip2-train stage1: ") and "captions.json, row 3" in message
    assert "(pass --skip_bad_samples to skip bad rows)" in message and "=True" not in message
    tiny.train([*common, "--output_dir", str(tmp_path / "b"), "--skip_bad_samples"], tmp_path)


def test_image_ids_reach_the_stage1_loss(assets, samples):
    collate = TrainingCollator(Blip2Collator.for_qformer(load_tokenizer(assets["bert"]), max_length=8), "stage1")
    batch = collate([samples[(0, i)] for i in range(4)])  # rows 0-1 show image 0, rows 2-3 image 1
    assert batch["image_ids"].tolist() == [0, 0, 1, 1] and batch["input_ids"].shape == (4, 8)
    paddle.seed(0)
    model = Blip2Qformer(Blip2Config(vision_config=tiny.vision_config(), qformer_config=tiny.qformer_config(0.0)))
    model.eval()
    inputs = {k: paddle.to_tensor(v) for k, v in batch.items() if k != "bad_samples"}
    with_ids = float(model(**inputs, losses=("itc",)).loss)
    inputs.pop("image_ids")
    without = float(model(**inputs, losses=("itc",)).loss)
    assert with_ids != pytest.approx(without)  # the captions of one image are positives of each other


def test_batches_passed_over_on_resume_are_not_loaded(assets, tmp_path):
    data = tiny.write_captions(tmp_path, bad_row=5)
    samples = TrainingSamples(load_training_data(["coco_caption"], [data], False), ImageProcessorConfig(56), seed=1)
    sampler = GlobalBatchSampler(len(samples), batch_size=4, num_replicas=1, rank=0, seed=2)
    sampler.set_epoch(1)
    sampler.fast_forward(epoch=1, batches=len(sampler) - 1)
    keys = list(sampler)
    assert [all(skip for _, _, skip in batch) for batch in keys] == [True] * (len(sampler) - 1) + [False]
    collate = TrainingCollator(Blip2Collator.for_qformer(load_tokenizer(assets["bert"]), max_length=8), "stage1")
    passed_over = [collate([samples[key] for key in batch]) for batch in keys[:-1]]  # row 5's image: not read
    assert all(set(batch) == {"resume_skipped_batch"} for batch in passed_over)
    sampler.set_epoch(2)
    assert not any(skip for batch in sampler for _, _, skip in batch)  # only the resumed epoch
