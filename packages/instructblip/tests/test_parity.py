"""InstructBLIP against HF transformers' InstructBlipForConditionalGeneration (FlanT5 and LLaMA), loaded from the
HF directory and from LAVIS's blip2_t5_instruct / blip2_vicuna_instruct state dict of the same weights."""

import numpy as np
import paddle
import pytest
from safetensors.numpy import load_file

from blip2_instructblip import InstructBlipConfig, InstructBlipForConditionalGeneration

ATOL = 1e-4
LLMS = ["t5", "llama"]


def io(fixtures_dir, llm):
    return {
        k: paddle.to_tensor(v) if v.dtype != np.float64 else v
        for k, v in load_file(str(fixtures_dir / llm / "io.safetensors")).items()
    }


def load(layout, llm, fixtures_dir):
    if layout == "hf":
        return InstructBlipForConditionalGeneration.from_pretrained(fixtures_dir / llm / "hf")
    # LAVIS files carry no config: the architecture comes from the caller
    config = InstructBlipConfig.from_file(fixtures_dir / llm / "hf" / "config.json")
    return InstructBlipForConditionalGeneration.from_pretrained(fixtures_dir / llm / "lavis.pth", config=config)


@pytest.fixture(scope="module", params=[(layout, llm) for llm in LLMS for layout in ("hf", "lavis")], ids="-".join)
def loaded(request, fixtures_dir):
    layout, llm = request.param
    return layout, llm, load(layout, llm, fixtures_dir)


def qformer_text(ref):
    return ref["qformer_input_ids"], ref["qformer_attention_mask"]


def test_every_weight_is_loaded(loaded):
    _, _, model = loaded
    assert model.load_report.missing == [] and model.load_report.unexpected == []


@paddle.no_grad()
def test_visual_tokens_depend_on_the_instruction_as_hf(loaded, fixtures_dir):
    _, llm, model = loaded
    ref = io(fixtures_dir, llm)
    ids, mask = qformer_text(ref)
    features = model.get_image_features(ref["pixel_values"], qformer_input_ids=ids, qformer_attention_mask=mask)
    np.testing.assert_allclose(features.numpy(), ref["language_model_inputs"].numpy(), atol=ATOL, rtol=0)
    without = model.get_image_features(ref["pixel_values"]).numpy()
    assert np.abs(without - features.numpy()).max() > 1e-2  # the instruction changes what the queries extract


@paddle.no_grad()
def test_logits_and_loss_match(loaded, fixtures_dir):
    _, llm, model = loaded
    ref = io(fixtures_dir, llm)
    ids, mask = qformer_text(ref)
    prompt, prompt_mask = ref["input_ids_with_image_tokens"], ref["attention_mask_with_image_tokens"]
    out = model(
        ref["pixel_values"],
        prompt,
        prompt_mask,
        labels=ref["labels"],
        qformer_input_ids=ids,
        qformer_attention_mask=mask,
    )
    ours, expected, exact = out.logits.numpy(), ref["logits"].numpy(), ref["logits_float64"]
    if llm == "llama":  # padded positions are never read
        valid = prompt_mask.numpy().astype(bool)
        ours, expected, exact = ours[valid], expected[valid], exact[valid]
    # within ATOL of HF's float32, or no further from float64 than HF's float32 is (+ ATOL / 10)
    hf_error = np.abs(expected - exact)
    ours_error = np.abs(ours - exact)
    assert ((np.abs(ours - expected) <= ATOL) | (ours_error <= hf_error + ATOL / 10)).all(), np.abs(
        ours - expected
    ).max()
    np.testing.assert_allclose(float(out.loss), float(ref["loss"]), atol=ATOL)


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
    ids, mask = qformer_text(ref)
    generated = model.generate(
        ref["pixel_values"],
        ref["input_ids_with_image_tokens"],
        ref["attention_mask_with_image_tokens"],
        qformer_input_ids=ids,
        qformer_attention_mask=mask,
        max_new_tokens=7,
        **settings,
    )
    np.testing.assert_array_equal(generated.numpy(), ref[kind].numpy())


@paddle.no_grad()
def test_lavis_way_prompt_after_the_queries_generates_the_same(loaded, fixtures_dir):
    """LAVIS's way (the projected queries put before the prompt) equals HF's image-token placeholders."""
    _, llm, model = loaded
    ref = io(fixtures_dir, llm)
    ids, mask = qformer_text(ref)
    generated = model.generate(
        ref["pixel_values"],
        ref["prompt_ids"],
        ref["prompt_mask"],
        qformer_input_ids=ids,
        qformer_attention_mask=mask,
        max_new_tokens=7,
    )
    np.testing.assert_array_equal(generated.numpy(), ref["greedy"].numpy())
