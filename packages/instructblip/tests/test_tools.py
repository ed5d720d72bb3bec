"""blip2-core's tools take an InstructBLIP checkpoint: they build this package's model from its config.json's
model_type, and the prompt (the instruction) reaches both the Q-Former and the LLM."""

import json

import numpy as np
import paddle
import pytest

from blip2_core.cli.predict import main as predict
from blip2_core.inference.predictor import Predictor
from blip2_instructblip import InstructBlipForConditionalGeneration

INSTRUCTION = "what is in the picture?"


@pytest.fixture(scope="module")
def predictor(model_dir):
    return Predictor.load(str(model_dir))


def test_load_bundle_builds_instructblip_from_the_model_type(predictor):
    assert isinstance(predictor.model, InstructBlipForConditionalGeneration)
    assert predictor.qformer_tokenizer is not None
    assert predictor.describe()["model_type"] == "instructblip"
    # LAVIS's InstructBLIP decoding (its generate's repetition penalty 1.5, the instructblip eval yamls)
    caption, vqa = predictor.settings_for("caption"), predictor.settings_for("vqa")
    assert (caption["max_new_tokens"], caption["min_new_tokens"], caption["repetition_penalty"]) == (80, 10, 1.5)
    assert (vqa["max_new_tokens"], vqa["length_penalty"], vqa["repetition_penalty"]) == (10, -1.0, 1.5)


def test_the_instruction_reaches_the_qformer_and_the_llm(predictor, image_file, monkeypatch):
    from PIL import Image

    model = predictor.model
    seen = {}
    original = model.get_image_features

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(model, "get_image_features", spy)
    pixels = [predictor.pixels(Image.open(image_file).convert("RGB"))]
    settings = predictor.bundle.generation("caption")
    (answer,) = predictor.caption(pixels, INSTRUCTION, settings)
    qformer_ids = seen["qformer_input_ids"].numpy()[0].tolist()
    assert qformer_ids == predictor.qformer_tokenizer([INSTRUCTION])["input_ids"][0]
    expected = model.instruct(
        paddle.to_tensor(np.stack(pixels)),
        [INSTRUCTION],
        predictor.tokenizer,
        predictor.qformer_tokenizer,
        **settings.generate_kwargs(),
    )
    assert [answer] == expected  # the answer alone: an instruction is not a prefix of it


def test_blip2_predict_with_a_prompt(model_dir, image_file, capsys):
    assert (
        predict(
            [
                "--model",
                str(model_dir),
                "--image",
                str(image_file),
                "--prompt",
                INSTRUCTION,
                "--json",
                "--max-new-tokens",
                "20",
            ]
        )
        == 0
    )
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["image"].endswith("x.jpg") and isinstance(row["caption"], str)


def test_vqa_reads_the_whole_prompt_in_the_qformer(predictor, image_file, monkeypatch):
    """LAVIS's InstructBLIP predict_answers: "Question: {} Short Answer:" filled in, read by both sides."""
    from PIL import Image

    seen = {}
    original = predictor.model.get_image_features
    monkeypatch.setattr(predictor.model, "get_image_features", lambda *a, **k: seen.update(k) or original(*a, **k))
    pixels = [predictor.pixels(Image.open(image_file).convert("RGB"))]
    predictor.answer(pixels, ["what color is the cat?"], None)
    expected = predictor.qformer_tokenizer(["Question: what color is the cat? Short Answer:"])["input_ids"][0]
    assert seen["qformer_input_ids"].numpy()[0].tolist() == expected


def test_blip2_serve_takes_an_instruction(predictor, image_file):
    """POST /v1/caption with an ``instruction`` field: the model answers it (the same as blip2-predict --prompt)."""
    pytest.importorskip("fastapi", reason="the service's test needs blip2-core[serve]")
    from fastapi.testclient import TestClient
    from PIL import Image

    from blip2_core.model.generation_settings import GenerationSettings
    from blip2_core.serve.app import create_app

    form = {"instruction": INSTRUCTION, "max_new_tokens": "12", "min_new_tokens": "2"}
    with TestClient(create_app(predictor, max_wait=0.0)) as client:
        with open(image_file, "rb") as image:
            answer = client.post("/v1/caption", data=form, files={"image": image})
        with open(image_file, "rb") as image:
            both = client.post("/v1/caption", data={**form, "prompt": "a photo of"}, files={"image": image})
    assert both.status_code == 422 and "not both" in both.text
    assert answer.status_code == 200, answer.text
    pixels = [predictor.pixels(Image.open(image_file).convert("RGB"))]
    settings = predictor.bundle.generation("caption", GenerationSettings(max_new_tokens=12, min_new_tokens=2))
    assert answer.json()["caption"] == predictor.caption(pixels, INSTRUCTION, settings)[0]


def test_bfloat16_on_cpu_runs_the_instruction_through_the_compiled_image_side(model_dir, image_file, predictor):
    """--dtype bfloat16 on a CPU: ViT + Q-Former (with the instruction) + projection as a compiled oneDNN graph."""
    from PIL import Image

    bf16 = Predictor.load(str(model_dir), dtype="bfloat16")
    assert "bfloat16" in bf16.dtype and bf16.model.compiled_image_encoder is not None
    image = Image.open(image_file).convert("RGB")
    pixels = paddle.to_tensor(np.stack([bf16.pixels(image)]))
    ids = bf16.qformer_tokenizer([INSTRUCTION])["input_ids"]
    text = {
        "qformer_input_ids": paddle.to_tensor(ids),
        "qformer_attention_mask": paddle.ones([1, len(ids[0])], "int64"),
    }
    with paddle.no_grad():
        ours = bf16.model.get_image_features(pixels, **text).astype("float32").numpy()
        reference = predictor.model.get_image_features(pixels, **text).numpy()
    assert np.abs(ours - reference).max() <= 0.02 * np.abs(reference).max()  # bf16's rounding, not another input
    (answer,) = bf16.caption([bf16.pixels(image)], INSTRUCTION, bf16.bundle.generation("caption"))
    assert isinstance(answer, str)
