"""One bundle, one set of decoding defaults: every tool loads and decodes a model the same way."""

import json
from pathlib import Path

import numpy as np
import pytest

from blip2_core.loading.bundle import load_bundle
from blip2_core.model.generation_settings import TASK_DEFAULTS, GenerationSettings

SRC = Path(__file__).parents[1] / "src" / "blip2_core"


@pytest.mark.parametrize(
    ("task", "llm", "expected"),
    [
        ("caption", "opt", (30, 8, 1.0)),
        ("caption", "t5", (30, 8, 1.0)),
        ("vqa", "opt", (10, 1, 0.0)),  # Blip2OPT.predict_answers' own default
        ("vqa", "t5", (10, 1, -1.0)),  # Blip2T5.predict_answers' own default
    ],
)
def test_each_task_decodes_with_lavis_defaults_for_its_llm(task, llm, expected):
    settings = GenerationSettings().resolved(task, llm)
    assert (settings.max_new_tokens, settings.min_new_tokens, settings.length_penalty) == expected
    assert settings.num_beams == 5
    given = GenerationSettings(length_penalty=2.0, max_new_tokens=4).resolved(task, llm)
    assert (given.length_penalty, given.max_new_tokens) == (2.0, 4)  # what a user sets stays
    assert "LAVIS" in TASK_DEFAULTS[(task, llm)].source


def test_generation_settings_are_checked_against_the_model():
    with pytest.raises(ValueError, match=r"min_new_tokens \(9\) must be <= max_new_tokens \(3\)"):
        GenerationSettings(min_new_tokens=9, max_new_tokens=3).check()
    with pytest.raises(ValueError, match=r"length_penalty must be in \[-5.0, 5.0\]"):
        GenerationSettings(length_penalty=-10).check()
    with pytest.raises(ValueError, match=r"exceed the LLM's 64 positions"):
        GenerationSettings(max_new_tokens=40).check(max_positions=64, prompt_tokens=32)
    GenerationSettings(max_new_tokens=32).check(max_positions=64, prompt_tokens=32)


def test_blip2_shapes_is_a_model_name(capsys):
    from blip2_core import Blip2ForConditionalGeneration
    from blip2_core.cli.predict import main
    from blip2_core.loading.default_model import default_model_path, default_vqa_path

    if default_model_path() is None:
        pytest.skip("this installation carries no default model")
    assert main(["--list-models"]) == 0
    listed = capsys.readouterr().out
    for name in ("blip2-shapes ", "blip2-shapes/vqa", "blip2-shapes/stage1"):
        assert name in listed
    by_name = Blip2ForConditionalGeneration.from_pretrained("blip2-shapes")
    by_path = Blip2ForConditionalGeneration.from_pretrained(default_model_path())
    for key, value in by_path.state_dict().items():
        np.testing.assert_array_equal(by_name.state_dict()[key].numpy(), value.numpy(), err_msg=key)
    bundle = load_bundle("blip2-shapes/vqa")
    assert bundle.qformer_tokenizer is not None and bundle.name == "blip2-shapes/vqa"
    assert bundle.model.config.qformer_text_input
    assert json.loads((default_vqa_path() / "config.json").read_text())["qformer_text_input"]


def test_blip2_predict_runs_blip2_shapes_by_name(capsys):
    from blip2_core.cli.predict import main
    from blip2_core.loading.default_model import default_model_path

    if default_model_path() is None:
        pytest.skip("this installation carries no default model")
    image = Path(__file__).parents[3] / "examples" / "shapes.jpg"
    if not image.exists():
        pytest.skip("outside a clone: no examples/")
    assert main(["--model", "blip2-shapes", "--image", str(image)]) == 0
    by_name = capsys.readouterr().out
    assert main(["--image", str(image)]) == 0
    assert by_name == capsys.readouterr().out  # the same model as no --model


def test_blip2_core_shows_its_wings():
    """The package's folders are its parts; no module mixes concerns past about 400 lines."""
    folders = {p.name for p in SRC.iterdir() if p.is_dir() and not p.name.startswith("__")}
    assert {"model", "loading", "checkpoint_io", "formats", "inference", "cli", "serve"} <= folders
    top_modules = {p.name for p in SRC.glob("*.py")}
    assert top_modules <= {"__init__.py", "lazy_names.py"}, top_modules
    for module in SRC.rglob("*.py"):
        assert len(module.read_text().splitlines()) <= 420, module


def test_precision_is_not_a_method_replaced_on_the_instance(fixtures_dir):
    from blip2_core import Blip2ForConditionalGeneration

    model = Blip2ForConditionalGeneration.from_pretrained(fixtures_dir / "opt" / "hf")
    assert "get_image_features" not in model.__dict__ and model.compiled_image_encoder is None
