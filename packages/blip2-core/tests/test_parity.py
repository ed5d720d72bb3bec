"""The whole model against HF transformers' Blip2ForConditionalGeneration / Blip2ForImageTextRetrieval,
loaded from the HF directory, a LAVIS .pth and a PaddleMIX directory of the same weights."""

import json

import numpy as np
import paddle
import pytest
from safetensors.numpy import load_file
from tiny_checkpoints import paddlemix_config, save_pdparams

from blip2_core import Blip2Config, Blip2ForConditionalGeneration, Blip2Qformer

ATOL = 1e-4
LLMS = ["opt", "t5"]


def io(fixtures_dir, llm):
    return {
        k: paddle.to_tensor(v) if v.dtype != np.float64 else v
        for k, v in load_file(str(fixtures_dir / llm / "io.safetensors")).items()
    }


def paddlemix_dir(fixtures_dir, llm, tmp_path):
    """PaddleMIX's layout: model_state.pdparams (written by paddle.save) + PaddleMIX's config.json naming the LLM."""
    state = load_file(str(fixtures_dir / llm / "paddlemix" / "vision_and_bridge.safetensors"))
    weights = save_pdparams(state, tmp_path / "vision_and_bridge")
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    config = paddlemix_config(fixtures_dir, llm, vision_and_bridge_name_or_path=weights)
    (model_dir / "config.json").write_text(json.dumps(config))
    return model_dir


def load(layout, llm, fixtures_dir, tmp_path):
    if layout == "hf":
        return Blip2ForConditionalGeneration.from_pretrained(fixtures_dir / llm / "hf")
    if layout == "lavis":  # LAVIS files carry no config: the architecture comes from the caller
        config = Blip2Config.from_file(fixtures_dir / llm / "hf" / "config.json")
        return Blip2ForConditionalGeneration.from_pretrained(fixtures_dir / llm / "lavis.pth", config=config)
    return Blip2ForConditionalGeneration.from_pretrained(paddlemix_dir(fixtures_dir, llm, tmp_path))


@pytest.fixture(
    scope="module",
    params=[(layout, llm) for llm in LLMS for layout in ("hf", "lavis", "paddlemix")],
    ids=lambda p: "-".join(p),
)
def loaded(request, fixtures_dir, tmp_path_factory):
    layout, llm = request.param
    model = load(layout, llm, fixtures_dir, tmp_path_factory.mktemp(f"{layout}-{llm}"))
    return layout, llm, model


def test_every_weight_is_loaded(loaded):
    _, _, model = loaded
    assert model.load_report.missing == [] and model.load_report.unexpected == []


@paddle.no_grad()
def test_image_features_logits_and_loss_match(loaded, fixtures_dir):
    _, llm, model = loaded
    ref = io(fixtures_dir, llm)
    pixels = ref["pixel_values"]
    np.testing.assert_allclose(
        model.get_image_features(pixels).numpy(), ref["language_model_inputs"].numpy(), atol=ATOL, rtol=0
    )
    ids, mask = ref["input_ids_with_image_tokens"], ref["attention_mask_with_image_tokens"]
    out = model(pixels, ids, mask, labels=ref["labels"])
    expected = ref["logits"].numpy()
    if llm == "opt":  # padded positions are never read
        valid = mask.numpy().astype(bool)
        np.testing.assert_allclose(out.logits.numpy()[valid], expected[valid], atol=ATOL, rtol=0)
    else:
        np.testing.assert_allclose(out.logits.numpy(), expected, atol=ATOL, rtol=0)
    np.testing.assert_allclose(float(out.loss), float(ref["loss"]), atol=ATOL)


@paddle.no_grad()
def test_prompt_without_image_tokens_gives_the_same_text_logits(loaded, fixtures_dir):
    """LAVIS's way (queries prepended to the prompt) equals HF's image-token placeholders."""
    _, llm, model = loaded
    ref = io(fixtures_dir, llm)
    prompt, prompt_mask = ref["prompt_ids"], ref["prompt_mask"]
    if llm == "opt":
        logits = model(ref["pixel_values"], prompt, prompt_mask).logits.numpy()[:, -prompt.shape[1] :]
        valid = prompt_mask.numpy().astype(bool)
        expected = ref["logits"].numpy()[:, -prompt.shape[1] :]
        np.testing.assert_allclose(logits[valid], expected[valid], atol=ATOL, rtol=0)
    else:
        logits = model(ref["pixel_values"], prompt, prompt_mask, labels=ref["labels"]).logits.numpy()
        np.testing.assert_allclose(logits, ref["logits"].numpy(), atol=ATOL, rtol=0)


@paddle.no_grad()
@pytest.mark.parametrize(
    "kind, settings",
    [
        ("greedy", dict(num_beams=1)),
        ("beam", dict(num_beams=3, length_penalty=1.0)),
        ("penalised", dict(min_new_tokens=4, repetition_penalty=1.5)),
    ],
)
def test_generations_are_identical(loaded, fixtures_dir, kind, settings):
    _, llm, model = loaded
    ref = io(fixtures_dir, llm)
    ids = model.generate(
        ref["pixel_values"],
        ref["input_ids_with_image_tokens"],
        ref["attention_mask_with_image_tokens"],
        max_new_tokens=7,
        **settings,
    )
    np.testing.assert_array_equal(ids.numpy(), ref[kind].numpy())


@paddle.no_grad()
def test_reused_image_features_and_prompt_only_input_generate_the_same(loaded, fixtures_dir):
    _, llm, model = loaded
    ref = io(fixtures_dir, llm)
    features = model.get_image_features(ref["pixel_values"])
    ids = model.generate(
        image_features=features, input_ids=ref["prompt_ids"], attention_mask=ref["prompt_mask"], max_new_tokens=7
    )
    np.testing.assert_array_equal(ids.numpy(), ref["greedy"].numpy())


@paddle.no_grad()
def test_stage1_scores_match_hf_retrieval_model(fixtures_dir):
    ref = {k: paddle.to_tensor(v) for k, v in load_file(str(fixtures_dir / "stage1" / "io.safetensors")).items()}
    model = Blip2Qformer.from_pretrained(fixtures_dir / "stage1" / "hf")
    # HF's retrieval checkpoints hold no LM head and no temperature: only those are missing
    assert set(model.load_report.missing) == {
        "lm_head.bias",
        "lm_head.dense.bias",
        "lm_head.dense.weight",
        "lm_head.layer_norm.bias",
        "lm_head.layer_norm.weight",
        "temp",
    }
    assert model.load_report.unexpected == []
    pixels, ids, mask = ref["pixel_values"], ref["input_ids"], ref["attention_mask"]
    itm = paddle.nn.functional.softmax(ref["itm_logits"], axis=-1)[:, 1]
    np.testing.assert_allclose(model.itm_scores(pixels, ids, mask).numpy(), itm.numpy(), atol=ATOL, rtol=0)
    np.testing.assert_allclose(
        model.itc_scores(pixels, ids, mask).numpy(), ref["itc_similarity"].numpy(), atol=ATOL, rtol=0
    )


@paddle.no_grad()
@pytest.mark.parametrize("layout", ["lavis", "paddlemix"])
def test_stage1_from_lavis_and_paddlemix_checkpoints_matches_hf(layout, fixtures_dir, tmp_path):
    """The whole stage-1 model as LAVIS (``temp`` 0-d, tied decoder listed twice) and PaddleMIX (``temp`` [1],
    token types, an untied decoder) hold it: every weight our model has is loaded, nothing else."""
    config = Blip2Config.from_file(fixtures_dir / "stage1" / "hf" / "config.json", stage1=True)
    if layout == "lavis":
        path = fixtures_dir / "stage1" / "lavis.pth"
    else:
        state = load_file(str(fixtures_dir / "stage1" / "paddlemix" / "model_state.safetensors"))
        assert state["temp"].shape == (1,)
        path = tmp_path / "model_state.pdparams"
        paddle.save({k: paddle.to_tensor(v) for k, v in state.items()}, str(path))
    model = Blip2Qformer.from_pretrained(path, config=config)
    assert model.load_report.missing == [] and model.load_report.unexpected == []
    assert model.temp.shape == [] and float(model.temp) == pytest.approx(0.1)  # the fixtures' temperature
    ref = {k: paddle.to_tensor(v) for k, v in load_file(str(fixtures_dir / "stage1" / "io.safetensors")).items()}
    pixels, ids, mask = ref["pixel_values"], ref["input_ids"], ref["attention_mask"]
    itm = paddle.nn.functional.softmax(ref["itm_logits"], axis=-1)[:, 1]
    np.testing.assert_allclose(model.itm_scores(pixels, ids, mask).numpy(), itm.numpy(), atol=ATOL, rtol=0)
    np.testing.assert_allclose(
        model.itc_scores(pixels, ids, mask).numpy(), ref["itc_similarity"].numpy(), atol=ATOL, rtol=0
    )
