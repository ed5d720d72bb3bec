"""Our Q-Former against HF transformers' Blip2ForImageTextRetrieval, loaded from each checkpoint layout."""

import numpy as np
import paddle
import pytest
from safetensors.numpy import load_file

from blip2_qformer import (
    QFormer,
    QFormerForPretraining,
    convert_state_dict,
    detect_layout,
    load_pretrained,
    pretraining,
)

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


# -- the real checkpoints' extra keys ------------------------------------------------------------------


def test_temp_is_the_top_level_key_in_both_real_shapes(tiny_config, fixtures_dir):
    """LAVIS saves ``temp`` as a 0-d parameter, PaddleMIX as shape [1] on its model (not under ``Qformer.``)."""
    for layout, shape in (("lavis", ()), ("paddlemix", (1,))):
        state = load_file(str(fixtures_dir / f"weights_{layout}.safetensors"))
        assert state["temp"].shape == shape and "Qformer.temp" not in state
        model, report = load_model(tiny_config, fixtures_dir, layout)
        assert "temp" not in report.missing
        assert model.temp.shape == []
        assert float(model.temp) == pytest.approx(float(state["temp"].reshape(())))
        assert float(model.temp) != pytest.approx(0.07)  # not the initial value


@pytest.mark.parametrize(
    "layout, unused",
    [
        # a buffer, and the LM decoder whose weight and bias LAVIS's state dict lists a second time (tied)
        (
            "lavis",
            [
                "Qformer.bert.embeddings.position_ids",
                "Qformer.cls.predictions.decoder.weight",
                "Qformer.cls.predictions.decoder.bias",
            ],
        ),
        # the same buffer, BERT's token types, and a decoder Linear PaddleMIX never uses (untied)
        (
            "paddlemix",
            [
                "Qformer.bert.embeddings.position_ids",
                "Qformer.bert.embeddings.token_type_embeddings.weight",
                "Qformer.cls.predictions.decoder.weight",
                "Qformer.cls.predictions.decoder.bias",
            ],
        ),
    ],
)
def test_real_keys_no_model_uses_are_dropped(layout, unused, tiny_config, fixtures_dir):
    state = load_file(str(fixtures_dir / f"weights_{layout}.safetensors"))
    assert set(unused) <= set(state)  # the fixtures carry them, as the real files do
    converted = convert_state_dict(state)
    assert set(converted) == set(QFormerForPretraining(tiny_config).state_dict())


def test_paddlemix_untied_decoder_is_not_what_scores_tokens(tiny_config, fixtures_dir, inputs, reference_io):
    """PaddleMIX takes the LM logits against the word embeddings; its own decoder Linear holds other values."""
    state = load_file(str(fixtures_dir / "weights_paddlemix.safetensors"))
    decoder = state["Qformer.cls.predictions.decoder.weight"]  # paddle Linear [hidden, vocab]
    assert not np.allclose(decoder.T, state["Qformer.bert.embeddings.word_embeddings.weight"])
    model, _ = load_model(tiny_config, fixtures_dir, "paddlemix")
    with paddle.no_grad():
        query_out, _ = model.image_features(model.qformer.ln_vision(inputs["raw"]))
        logits = model.itg_logits(query_out, inputs["itg_ids"], inputs["mask"]).numpy()
    valid = reference_io["attention_mask"].astype(bool)
    close(logits[valid], reference_io["itg_logits"][valid])


def test_bare_paddlemix_bridge_is_recognised_and_loads(tiny_config, fixtures_dir, inputs, reference_io):
    """A bridge file alone (PaddleMIX's bridge_name_or_path): the Q-Former module's keys, no ``Qformer.``."""
    state = load_file(str(fixtures_dir / "weights_paddlemix_bridge.safetensors"))
    assert not any(k.startswith("Qformer.") for k in state)
    assert detect_layout(state) == "paddlemix"
    model = QFormerForPretraining(tiny_config)
    model.eval()
    report = load_pretrained(model, state)
    assert report.missing == ["temp"]  # PaddleMIX keeps it on the model, outside the Q-Former
    assert report.unexpected == []
    with paddle.no_grad():
        close(model.qformer(inputs["raw"]).last_hidden_state, reference_io["query_output"])
        close(model.itm_logits(inputs["raw"], inputs["ids"], inputs["mask"]), reference_io["itm_logits"])


# -- ITM loss against a hand-written LAVIS computation -----------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
def test_itm_loss_matches_lavis_on_the_same_hard_negatives(layout, tiny_config, fixtures_dir, inputs, reference_io):
    """The fixture script computes LAVIS's ITM loss by hand on the most similar other sample as each negative;
    our sampler is made to pick the same, and must be asked for image negatives from the text-to-image
    similarities and text negatives from the image-to-text ones."""
    model, _ = load_model(tiny_config, fixtures_dir, layout)
    drawn = []

    def hardest_negative(similarity, positives, *args, **kwargs):
        masked = paddle.where(positives > 0, paddle.full_like(similarity, -float("inf")), similarity)
        choice = masked.argmax(axis=1)
        drawn.append(tuple(choice.numpy().tolist()))
        return choice

    with pytest.MonkeyPatch.context() as patch, paddle.no_grad():
        patch.setattr(pretraining, "sample_hard_negatives", hardest_negative)
        out = model(inputs["raw"], inputs["ids"], inputs["mask"], losses=("itm",))
    expected = [tuple(reference_io[f"itm_negative_{kind}"].tolist()) for kind in ("images", "texts")]
    assert sorted(drawn) == sorted(expected)
    close(out.loss_itm, reference_io["loss_itm"])
    close(out.loss, reference_io["loss_itm"])
    assert out.loss_itc is None and out.loss_itg is None
