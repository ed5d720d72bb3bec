"""LAVIS's RandAugment (blip_image_train): its operations, magnitudes and sampling, checked on images whose
result can be worked out by hand."""

import random

import numpy as np
import pytest
from PIL import Image, ImageOps

from blip2_data import ImageProcessor, ImageProcessorConfig
from blip2_data.randaugment import BLIP_AUGMENTATIONS, FILL, RandomAugment, apply_operation


class Draws:
    """An rng whose random() values are given (choice takes the first listed operation names in turn)."""

    def __init__(self, randoms, choices=()):
        self.randoms, self.choices = list(randoms), list(choices)

    def random(self):
        return self.randoms.pop(0)

    def choice(self, options):
        return self.choices.pop(0)


def dot(width=40, height=30, at=(20, 15)):
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[at[1], at[0]] = 255
    return Image.fromarray(pixels)


def brightest(image):
    pixels = np.asarray(image)[..., 0].astype(int)
    y, x = np.unravel_index(np.argmax(pixels), pixels.shape)
    return int(x), int(y)


def test_translate_moves_by_half_of_ten_pixels_at_magnitude_five_either_way():
    # LAVIS: offset = 5 / 10 * 10 = 5; forward map x' = x - offset; the sign flips when random() > 0.5
    assert brightest(apply_operation(dot(), "TranslateX", 5, Draws([0.2]))) == (15, 15)
    assert brightest(apply_operation(dot(), "TranslateX", 5, Draws([0.9]))) == (25, 15)
    assert brightest(apply_operation(dot(), "TranslateY", 5, Draws([0.2]))) == (20, 10)


def test_shear_is_point_three_times_the_level_fraction_and_fills_grey():
    # ShearX forward map x' = x + 0.15 y: the dot at (20, 15) lands near x = 22.25
    x, y = brightest(apply_operation(dot(), "ShearX", 5, Draws([0.2])))
    assert y == 15 and x in (22, 23)
    sheared = np.asarray(apply_operation(Image.new("RGB", (40, 30), (0, 0, 0)), "ShearX", 5, Draws([0.2])))
    assert tuple(sheared[29, 0]) == FILL and tuple(sheared[0, 39]) == (0, 0, 0)  # the corner the shear uncovers


def test_rotation_is_fifteen_degrees_counter_clockwise_unless_flipped():
    # LAVIS flips rotation on random() < 0.5; 15 degrees counter-clockwise around the centre moves (30, 15) up
    x, y = brightest(apply_operation(dot(at=(30, 15)), "Rotate", 5, Draws([0.9])))
    expected = (20 + 10 * np.cos(np.radians(15)), 15 - 10 * np.sin(np.radians(15)))
    assert abs(x - expected[0]) <= 1 and abs(y - expected[1]) <= 1


def test_enhance_factor_is_one_at_magnitude_five_as_in_lavis():
    image = Image.fromarray(np.random.RandomState(0).randint(0, 255, (20, 20, 3), dtype=np.uint8))
    for name in ("Brightness", "Sharpness"):
        np.testing.assert_array_equal(np.asarray(apply_operation(image, name, 5, Draws([]))), np.asarray(image))
    brighter = np.asarray(apply_operation(image, "Brightness", 10, Draws([])))  # factor 1.9
    np.testing.assert_array_equal(brighter, np.clip(np.asarray(image) * np.float32(1.9), 0, 255).astype(np.uint8))
    np.testing.assert_array_equal(
        np.asarray(apply_operation(image, "AutoContrast", 5, Draws([]))), np.asarray(ImageOps.autocontrast(image))
    )


def test_two_operations_each_applied_with_probability_one_half():
    # Equalize skipped (0.7 > 0.5), TranslateX applied (0.3) with the sign draw 0.2: the dot moved left by 5
    augment = RandomAugment(rng=Draws([0.7, 0.3, 0.2], choices=["Equalize", "TranslateX"]))
    assert brightest(augment(dot())) == (15, 15)
    assert augment.augmentations == BLIP_AUGMENTATIONS and (augment.N, augment.M) == (2, 5)
    with pytest.raises(ValueError, match="unknown RandAugment operations"):
        RandomAugment(augmentations=["Solarise"])


def test_the_training_processor_applies_it_only_when_configured_and_saves_the_choice(tmp_path):
    image = Image.fromarray(np.random.RandomState(1).randint(0, 255, (60, 80, 3), dtype=np.uint8))
    plain = ImageProcessor(ImageProcessorConfig(image_size=32), train=True, rng=random.Random(3))(image)
    again = ImageProcessor(ImageProcessorConfig(image_size=32), train=True, rng=random.Random(3))(image)
    np.testing.assert_array_equal(plain, again)
    augmented = [
        ImageProcessor(ImageProcessorConfig(image_size=32, rand_augment=True), train=True, rng=random.Random(s))(image)
        for s in range(8)
    ]
    plain_ones = [
        ImageProcessor(ImageProcessorConfig(image_size=32), train=True, rng=random.Random(s))(image) for s in range(8)
    ]
    assert any(not np.array_equal(a, p) for a, p in zip(augmented, plain_ones))
    processor = ImageProcessor(ImageProcessorConfig(image_size=32, rand_augment=True))
    processor.save_pretrained(tmp_path)
    assert ImageProcessor.from_pretrained(tmp_path).config.rand_augment is True
