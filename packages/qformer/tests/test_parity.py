"""Our Q-Former against HF transformers' Blip2ForImageTextRetrieval, loaded from each checkpoint layout."""

import numpy as np
import paddle
import pytest
from safetensors.numpy import load_file

from blip2_qformer import QFormer, QFormerForPretraining, detect_layout, load_pretrained

ATOL = 1e-4
LAYOUTS = ["hf", "lavis", "paddlemix"]


def load_model(config, fixtures_dir, layout):
    model = QFormerForPretraining(config)
    model.eval()
    report = load_pretrained(model, load_file(str(fixtures_dir / f"weights_{layout}.safetensors")))
    return model, report


def close(actual, expected):
    np.testing.assert_allclose(np.asarray(actual), expected, atol=ATOL, rtol=0)


@pytest.fixture(scope="module", params=LAYOUTS)
def loaded(request, tiny_config, fixtures_dir):
    return request.param, *load_model(tiny_config, fixtures_dir, request.param)


@pytest.fixture(scope="module")
def inputs(reference_io):
    return {
        "raw": paddle.to_tensor(reference_io["image_embeds_raw"]),
        "ids": paddle.to_tensor(reference_io["input_ids"]),
        "mask": paddle.to_tensor(reference_io["attention_mask"]),
        "itg_ids": paddle.to_tensor(reference_io["itg_input_ids"]),
    }


def test_layouts_are_detected(fixtures_dir):
    for layout in LAYOUTS:
        assert detect_layout(load_file(str(fixtures_dir / f"weights_{layout}.safetensors"))) == layout


def test_report_names_what_each_layout_lacks(loaded):
    layout, _, report = loaded
    assert report.unexpected == []
    if layout == "hf":  # HF's retrieval model has no LM head and no temperature
        assert report.missing == [
            "lm_head.bias",
            "lm_head.dense.bias",
            "lm_head.dense.weight",
            "lm_head.layer_norm.bias",
            "lm_head.layer_norm.weight",
            "temp",
        ]
    else:
        assert report.missing == []


@paddle.no_grad()
def test_ln_vision_and_queries_match(loaded, inputs, reference_io):
    _, model, _ = loaded
    close(model.qformer.ln_vision(inputs["raw"]), reference_io["image_embeds_normalized"])
    out = model.qformer(inputs["raw"])
    close(out.last_hidden_state, reference_io["query_output"])


@paddle.no_grad()
def test_text_encoder_matches(loaded, inputs, reference_io):
    _, model, _ = loaded
    out = model.qformer(input_ids=inputs["ids"], attention_mask=inputs["mask"])
    valid = reference_io["attention_mask"].astype(bool)  # padded rows are never read
    close(out.last_hidden_state.numpy()[valid], reference_io["text_output"][valid])


@paddle.no_grad()
def test_multimodal_encoder_and_itm_match(loaded, inputs, reference_io):
    _, model, _ = loaded
    out = model.qformer(inputs["raw"], input_ids=inputs["ids"], attention_mask=inputs["mask"])
    close(
        out.last_hidden_state[:, : model.config.num_query_tokens],
        reference_io["multimodal_output"][:, : model.config.num_query_tokens],
    )
    close(model.itm_logits(inputs["raw"], inputs["ids"], inputs["mask"]), reference_io["itm_logits"])


@paddle.no_grad()
def test_itc_similarity_matches(loaded, inputs, reference_io):
    _, model, _ = loaded
    features = model.extract_features(inputs["raw"], mode="image")
    text = model.extract_features(input_ids=inputs["ids"], attention_mask=inputs["mask"], mode="text")
    close(model.itc_similarity(features.image_embeds_proj, text.text_embeds_proj[:, 0]), reference_io["itc_similarity"])


@paddle.no_grad()
def test_cached_itg_pass_equals_hf_full_pass_with_unilm_mask(loaded, inputs, reference_io):
    """Text after cached queries (ours, as LAVIS) == one pass with HF over queries+text under the UniLM mask."""
    layout, model, _ = loaded
    normalized = model.qformer.ln_vision(inputs["raw"])
    query_out, _ = model.image_features(normalized)
    text = model.qformer(
        input_ids=inputs["itg_ids"],
        attention_mask=inputs["mask"],
        past_key_values=query_out.past_key_values,
        causal=True,
    )
    valid = reference_io["attention_mask"].astype(bool)
    close(text.last_hidden_state.numpy()[valid], reference_io["itg_text_hidden"][valid])
    if layout != "hf":
        logits = model.itg_logits(query_out, inputs["itg_ids"], inputs["mask"]).numpy()
        close(logits[valid], reference_io["itg_logits"][valid])


@pytest.mark.parametrize("layout", ["lavis", "paddlemix"])
def test_itc_and_itg_losses_match_torch(layout, tiny_config, fixtures_dir, inputs, reference_io):
    model, _ = load_model(tiny_config, fixtures_dir, layout)
    out = model(inputs["raw"], inputs["ids"], inputs["mask"], losses=("itc", "itg"))  # ITG puts [DEC] first itself
    close(out.loss_itc, reference_io["loss_itc"])
    close(out.loss_itg, reference_io["loss_itg"])
    close(out.loss, reference_io["loss_itc"] + reference_io["loss_itg"])
    assert out.loss_itm is None


def test_bare_qformer_loads_and_reports_the_heads(tiny_config, fixtures_dir, reference_io):
    model = QFormer(tiny_config)
    model.eval()
    report = load_pretrained(model, load_file(str(fixtures_dir / "weights_lavis.safetensors")))
    assert report.missing == []
    assert sorted(report.unexpected) == sorted(
        [
            "itm_head.bias",
            "itm_head.weight",
            "lm_head.bias",
            "lm_head.dense.bias",
            "lm_head.dense.weight",
            "lm_head.layer_norm.bias",
            "lm_head.layer_norm.weight",
            "temp",
            "text_proj.bias",
            "text_proj.weight",
            "vision_proj.bias",
            "vision_proj.weight",
        ]
    )
    with paddle.no_grad():
        close(model(paddle.to_tensor(reference_io["image_embeds_raw"])).last_hidden_state, reference_io["query_output"])
