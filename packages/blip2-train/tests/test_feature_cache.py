"""The frozen-ViT feature cache: written once (one process or several), read back in training with the loss of
training from the images (eval transform), and refused when it does not fit the run."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import paddle
import pytest
import tiny

import blip2_train
from blip2_core import Blip2Qformer
from blip2_data import ImageProcessor, ImageProcessorConfig
from blip2_train.feature_cache import CacheKey, FeatureCache, FeatureCacheError

STEPS = ["--max_steps", "3", "--warmup_steps", "1", "--learning_rate", "1e-3", "--save_steps", "3"]


def cache_features(assets, cache, cwd, *extra, check=True, env=None, data=None, dataset="custom_caption"):
    args = ["cache-features", "--model_name_or_path", str(assets["vision_no_dropout"]), "--data_files",
            data or assets["data"], "--dataset", dataset, "--image_size", str(tiny.IMAGE_SIZE), "--batch_size", "3",
            "--shard_size", "5", "--output_dir", str(cache), *extra]  # fmt: skip
    environment = {**tiny.environment(), **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "blip2_train", *args], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    if check:
        assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def stage_args(stage, assets, output):
    common = ["--data_files", assets["data"], "--dataset", "custom_caption", "--output_dir", str(output),
              "--per_device_train_batch_size", "4", "--seed", "3", *STEPS, *tiny.COMMON]  # fmt: skip
    if stage == "stage1":
        return ["stage1", "--vision_model_name_or_path", str(assets["vision_no_dropout"]), "--qformer_init",
                str(assets["bert"]), *common]  # fmt: skip
    return ["stage2", "--model_name_or_path", str(assets["vision_no_dropout"]), "--text_model_name_or_path",
            str(assets["llm_no_dropout"]), *common]  # fmt: skip


def test_cache_holds_the_frozen_vits_eval_features(assets, tmp_path):
    cache = tmp_path / "cache"
    cache_features(assets, cache, tmp_path)
    features = FeatureCache(cache)
    assert len(features) == 8 and features.dtype == "float32"  # 16 captions of 8 images: each image once
    assert len(list(cache.glob("features-*.safetensors"))) == 2  # 8 images in shards of 5
    model = Blip2Qformer.from_pretrained(assets["vision_no_dropout"], allow_missing_weights=True)
    config = ImageProcessorConfig(image_size=tiny.IMAGE_SIZE)
    features.check(CacheKey.of(model, config))
    root = assets["data"].split(",")[0]
    paths = [f"{root}/img{i}.jpg" for i in (0, 7)]
    pixels = np.stack([ImageProcessor(config)(p) for p in paths])
    with paddle.no_grad():
        expected = model.encode_image(paddle.to_tensor(pixels)).numpy()
    # equal up to float32 rounding: the cache was encoded in batches of 3, these two together
    np.testing.assert_allclose(np.stack([features.get(p) for p in paths]), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("stage", ["stage1", "stage2"])
def test_loss_from_the_cache_equals_the_loss_from_the_images(assets, tmp_path, stage):
    """Three optimizer steps (so the updates are compared too) from the cache and from the images through the
    eval transform (--image_augmentation false): the same losses, up to float32 rounding (the cache encoded its
    images in batches of 3, the uncached run in batches of 4). A float16 cache gives nearly the same."""
    cache, half = tmp_path / "cache", tmp_path / "cache16"
    cache_features(assets, cache, tmp_path)
    tiny.train([*stage_args(stage, assets, tmp_path / "images"), "--image_augmentation", "false"], tmp_path)
    tiny.train([*stage_args(stage, assets, tmp_path / "cached"), "--feature_cache", str(cache)], tmp_path)
    from_images, from_cache = tiny.losses(tmp_path / "images"), tiny.losses(tmp_path / "cached")
    assert len(from_images) == 3
    np.testing.assert_allclose(from_cache, from_images, rtol=1e-6)
    if stage == "stage2":
        cache_features(assets, half, tmp_path, "--dtype", "float16")
        tiny.train([*stage_args(stage, assets, tmp_path / "half"), "--feature_cache", str(half)], tmp_path)
        # the half cache holds other numbers (float16 rounding) ...
        halves, singles = FeatureCache(half), FeatureCache(cache)
        assert halves.dtype == "float16"
        path = f"{assets['data'].split(',')[0]}/img0.jpg"
        single = singles.get(path)  # both read back as float32
        rounding = np.abs(halves.get(path) - single)
        assert 0 < rounding.max() < 1e-2 * np.abs(single).max()
        # ... and the first step's loss stays near (later steps part: AdamW's first updates are lr * sign(g) for
        # small g). How near depends on the CPU's rounding: the tiny model's loss barely reads the features, and
        # on an Intel Xeon it came out equal to the 8 decimals the log keeps.
        first = tiny.losses(tmp_path / "half")[0]
        assert first == pytest.approx(from_images[0], rel=1e-2)
        # augmented images: another loss (what the cache gives up)
        tiny.train(stage_args(stage, assets, tmp_path / "augmented"), tmp_path)
        assert not np.allclose(tiny.losses(tmp_path / "augmented"), from_images, rtol=1e-4)


def test_vqa_finetuning_with_a_frozen_vit_from_the_cache(assets, tmp_path):
    """finetune-vqa (question into the Q-Former, weighted answers) with --freeze_vit true: the same losses."""
    data = tiny.write_vqa(tmp_path / "vqa")
    cache_features(assets, tmp_path / "cache", tmp_path, data=data, dataset="coco_vqa")
    args = ["finetune-vqa", "--model_name_or_path", str(assets["vision_no_dropout"]), "--qformer_tokenizer",
            str(assets["bert"]), "--text_model_name_or_path", str(assets["llm_no_dropout"]), "--dataset", "coco_vqa",
            "--data_files", data, "--freeze_vit", "true", "--per_device_train_batch_size", "4", "--seed", "3",
            *STEPS, *tiny.COMMON, "--max_txt_len", "16"]  # fmt: skip
    tiny.train([*args, "--output_dir", str(tmp_path / "images"), "--image_augmentation", "false"], tmp_path)
    tiny.train([*args, "--output_dir", str(tmp_path / "cached"), "--feature_cache", str(tmp_path / "cache")], tmp_path)
    from_images = tiny.losses(tmp_path / "images")
    assert len(from_images) == 3
    np.testing.assert_allclose(tiny.losses(tmp_path / "cached"), from_images, rtol=1e-6)


def test_cache_made_differently_is_refused_naming_what_differs(assets, tmp_path):
    cache = tmp_path / "cache"
    cache_features(assets, cache, tmp_path)
    proc = tiny.train(
        [*stage_args("stage2", assets, tmp_path / "out"), "--feature_cache", str(cache), "--image_size", "84"],
        tmp_path, check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert f"--feature_cache {cache} was made differently" in proc.stderr
    assert "image size: cache 56, this run 84" in proc.stderr
    assert "transform resize: cache 56, this run 84" in proc.stderr
    # other ViT weights (here: one changed value) are named as such
    model = Blip2Qformer.from_pretrained(assets["vision_no_dropout"], allow_missing_weights=True)
    config = ImageProcessorConfig(image_size=tiny.IMAGE_SIZE)
    model.vision_model.cls_token.set_value(model.vision_model.cls_token + 1e-3)
    with pytest.raises(FeatureCacheError, match="vision encoder weights: cache"):
        FeatureCache(cache).check(CacheKey.of(model, config))
    # adding to the directory with another encoder is refused too
    proc = cache_features(assets, cache, tmp_path, "--image_size", "84", check=False)
    assert proc.returncode != 0 and "already holds another feature cache" in proc.stderr


def test_image_missing_from_the_cache_is_named(assets, tmp_path):
    cache = tmp_path / "cache"
    cache_features(assets, cache, tmp_path)
    data = tiny.write_captions(tmp_path / "more", images=9)  # another dataset: its images are not cached
    args = stage_args("stage2", assets, tmp_path / "out")
    args[args.index("--data_files") + 1] = data
    proc = tiny.train([*args, "--feature_cache", str(cache)], tmp_path, check=False)
    assert proc.returncode != 0
    assert f"{tmp_path}/more/images/img0.jpg and 8 more" in proc.stderr
    assert f"--feature_cache {cache} has no features for image" in proc.stderr
    # the same check per sample, in the data pipeline
    with pytest.raises(FeatureCacheError, match="has no features for image .*img3.jpg"):
        FeatureCache(cache).get(tmp_path / "more" / "images" / "img3.jpg")


def test_feature_cache_needs_a_frozen_vit(assets, tmp_path):
    args = ["finetune-caption", "--output_dir", str(tmp_path / "out"), "--feature_cache", str(tmp_path)]
    proc = tiny.train(args, tmp_path, check=False)
    assert proc.returncode != 0 and "--freeze_vit false" in proc.stderr and "--freeze_vit true" in proc.stderr


def test_each_process_writes_its_share(assets, tmp_path):
    """Ranks as paddle.distributed.launch numbers them: each writes its own shards and part; the two parts read
    as one cache equal to one process's; with a rank missing the cache is refused as incomplete."""
    one, two = tmp_path / "one", tmp_path / "two"
    cache_features(assets, one, tmp_path)
    cache_features(assets, two, tmp_path, env={"PADDLE_TRAINER_ID": "1", "PADDLE_TRAINERS_NUM": "2"})
    with pytest.raises(FeatureCacheError, match=r"incomplete: rank\(s\) \[0\] of 2 did not finish"):
        FeatureCache(two)
    cache_features(assets, two, tmp_path, env={"PADDLE_TRAINER_ID": "0", "PADDLE_TRAINERS_NUM": "2"})
    parts = [json.loads(p.read_text()) for p in sorted(two.glob("part-*.json"))]
    assert [len(p["index"]) for p in parts] == [4, 4] and not set(parts[0]["index"]) & set(parts[1]["index"])
    single, split = FeatureCache(one), FeatureCache(two)
    assert set(single.index) == set(split.index)
    for path in single.index:
        np.testing.assert_allclose(split.get(path), single.get(path), rtol=1e-5, atol=1e-6)


def test_cache_features_under_paddles_launcher(assets, tmp_path):
    """Two processes started by paddle.distributed.launch: two shards and two parts, one cache of all images."""
    entry = str(Path(blip2_train.__file__).parent / "__main__.py")  # the launcher starts a script
    cache, log = tmp_path / "cache", tmp_path / "launch-log"
    args = ["cache-features", "--model_name_or_path", str(assets["vision_no_dropout"]), "--data_files",
            assets["data"], "--dataset", "custom_caption", "--image_size", str(tiny.IMAGE_SIZE), "--output_dir",
            str(cache)]  # fmt: skip
    command = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--backend", "gloo",
               "--log_dir", str(log), entry, *args]  # fmt: skip
    proc = subprocess.run(command, cwd=tmp_path, env=tiny.environment(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:] + "".join(p.read_text() for p in log.glob("workerlog.*"))
    assert sorted(p.name for p in cache.glob("part-*.json")) == ["part-r000-of-002.json", "part-r001-of-002.json"]
    assert len(FeatureCache(cache)) == 8


def test_missing_cache_directory_says_how_to_make_one(tmp_path):
    with pytest.raises(FeatureCacheError, match="no feature cache there.*blip2-train cache-features"):
        FeatureCache(tmp_path / "nothing")
