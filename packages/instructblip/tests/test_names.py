"""InstructBLIP's known names reach blip2-core's table (blip2-predict --list-models, the loader) through the
blip2_core.model_types entry point, and the tools pick this package's model class by name or by config.json."""

import json

import pytest

from blip2_core.cli.predict import main as predict
from blip2_core.loading import model_names
from blip2_core.loading.model_types import for_checkpoint, installed

HF_NAMES = [f"Salesforce/instructblip-{llm}" for llm in ("flan-t5-xl", "flan-t5-xxl", "vicuna-7b", "vicuna-13b")]
LAVIS_NAMES = ["blip2_t5_instruct/flant5xl", "blip2_t5_instruct/flant5xxl", "blip2_vicuna_instruct/vicuna7b",
               "blip2_vicuna_instruct/vicuna13b"]  # fmt: skip


def test_the_model_type_is_registered():
    assert [t.name for t in installed()][:1] == ["blip-2"] and "instructblip" in [t.name for t in installed()]


@pytest.mark.parametrize("name", HF_NAMES + LAVIS_NAMES)
def test_every_name_is_known_and_builds_instructblip(name):
    entry = model_names.lookup(name)
    assert entry is not None and entry.kind == "instruction-tuned" and entry.image_size == 224
    assert for_checkpoint(name).name == "instructblip"
    if entry.layout == "lavis":  # the trimmed file: the frozen ViT and the LLM come from elsewhere
        assert entry.requires == ("eva_vit_g",) and entry.llm_repo and entry.source.endswith("_trimmed.pth")
    else:
        assert entry.source == name


def test_list_models_shows_them(capsys):
    assert predict(["--list-models"]) == 0
    listed = capsys.readouterr().out
    for name in HF_NAMES + LAVIS_NAMES:
        assert name in listed


def test_a_typo_is_answered_with_the_right_name():
    assert model_names.similar_names("Salesforce/instructblip-flan-t5xl")[0] == "Salesforce/instructblip-flan-t5-xl"
    assert model_names.is_misspelt_name("blip2_t5_instruct/flant5")


def test_a_local_directory_is_dispatched_on_its_model_type(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "instructblip"}))
    assert for_checkpoint(tmp_path).name == "instructblip"
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "blip-2"}))
    assert for_checkpoint(tmp_path).name == "blip-2"
