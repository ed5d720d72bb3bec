import json
import random

import numpy as np
import pytest
from conftest import write_jpeg
from PIL import Image

from blip2_data import (
    CLIP_MEAN,
    CLIP_STD,
    ImageProcessor,
    ImageProcessorConfig,
    TextProcessor,
    apply_prompt,
    pre_caption,
    pre_question,
)


def test_pre_caption_lowercases_strips_punctuation_and_truncates():
    assert (
        pre_caption("A woman wearing a net on her head cutting a cake. ")
        == "a woman wearing a net on her head cutting a cake"
    )
    assert pre_caption('Two  "dogs" (one #brown):  playing!\n') == "two dogs one brown playing"
    assert pre_caption(" ".join(f"w{i}" for i in range(60))) == " ".join(f"w{i}" for i in range(50))
    assert pre_caption("one two three", max_words=2) == "one two"


def test_pre_question_removes_punctuation_without_spaces():
    assert pre_question("What color is the cat?") == "what color is the cat?"
    assert pre_question("Is it (really) a dog.") == "is it really a dog"
    assert pre_question("How  many:dogs ") == "how manydogs"
    assert pre_question("a b c d", max_words=3) == "a b c"


def test_prompts():
    assert apply_prompt("Question: {} Answer:", "is it red?") == "Question: is it red? Answer:"
    assert apply_prompt("a photo of ", "a dog") == "a photo of a dog"
    assert TextProcessor("question", prompt="Question: {} Answer:")("Is it RED?") == "Question: is it red? Answer:"
    with pytest.raises(ValueError, match="kind"):
        TextProcessor("summary")


def test_eval_resize_matches_pil_bicubic_and_clip_normalisation(tmp_path):
    path = write_jpeg(tmp_path / "x.jpg", 80, 60)
    out = ImageProcessor(ImageProcessorConfig(image_size=32))(path)
    assert out.shape == (3, 32, 32) and out.dtype == np.float32
    resized = np.asarray(Image.open(path).convert("RGB").resize((32, 32), Image.BICUBIC), dtype=np.float64) / 255
    expected = ((resized - np.array(CLIP_MEAN)) / np.array(CLIP_STD)).transpose(2, 0, 1)
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_train_crop_samples_scale_and_ratio_and_flips(tmp_path):
    config = ImageProcessorConfig(image_size=16, min_scale=0.5, max_scale=1.0, horizontal_flip=True)
    processor = ImageProcessor(config, train=True, rng=random.Random(0))
    areas, ratios = [], []
    for _ in range(200):
        left, top, right, bottom = processor.random_resized_crop_box(640, 480)
        assert 0 <= left < right <= 640 and 0 <= top < bottom <= 480
        areas.append((right - left) * (bottom - top) / (640 * 480))
        ratios.append((right - left) / (bottom - top))
    assert 0.49 <= min(areas) and max(areas) <= 1.0 and max(areas) - min(areas) > 0.3
    assert 3 / 4 - 0.02 <= min(ratios) and max(ratios) <= 4 / 3 + 0.02
    # Left half black, right half white: a flip moves the bright side, so over many draws both sides appear.
    pixels = np.zeros((48, 64, 3), np.uint8)
    pixels[:, 32:] = 255
    image = Image.fromarray(pixels)
    flips = {bool(processor(image)[0, :, :4].mean() > 0) for _ in range(40)}
    assert flips == {True, False}
    no_flip = ImageProcessor(
        ImageProcessorConfig(image_size=16, horizontal_flip=False), train=True, rng=random.Random(0)
    )
    assert {bool(no_flip(image)[0, :, :4].mean() > 0) for _ in range(40)} == {False}


def test_config_round_trip_and_hf_preprocessor_config(tmp_path):
    config = ImageProcessorConfig(image_size=364, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), min_scale=0.6)
    ImageProcessor(config).save_pretrained(tmp_path / "model")
    saved = json.loads((tmp_path / "model" / "preprocessor_config.json").read_text())
    assert saved["size"] == {"height": 364, "width": 364} and saved["resample"] == 3
    assert ImageProcessor.from_pretrained(tmp_path / "model", train=True).config == config
    # HF's Salesforce/blip2-opt-2.7b file layout.
    hf = {
        "do_normalize": True,
        "do_resize": True,
        "image_mean": list(CLIP_MEAN),
        "image_processor_type": "BlipImageProcessor",
        "image_std": list(CLIP_STD),
        "processor_class": "Blip2Processor",
        "resample": 3,
        "rescale_factor": 0.00392156862745098,
        "size": {"height": 224, "width": 224},
    }
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "preprocessor_config.json").write_text(json.dumps(hf))
    loaded = ImageProcessor.from_pretrained(tmp_path / "hf")
    assert loaded.config == ImageProcessorConfig(image_size=224)
    with pytest.raises(FileNotFoundError, match="preprocessor_config.json"):
        ImageProcessor.from_pretrained(tmp_path)
