"""Our EVA-ViT against HF transformers' Blip2VisionModel, loaded from each checkpoint layout."""

import dataclasses

import numpy as np
import paddle
import pytest
from safetensors.numpy import load_file

from blip2_eva_vit import EvaVisionTransformer, convert_state_dict, detect_layout, load_pretrained, to_hf_state_dict

ATOL = 1e-4


def load_model(config, fixtures_dir, layout):
    model = EvaVisionTransformer(config)
    model.eval()
    report = load_pretrained(model, load_file(str(fixtures_dir / f"weights_{layout}.safetensors")))
    return model, report


@pytest.mark.parametrize("layout", ["hf", "lavis", "paddlemix"])
def test_every_hidden_state_matches_hf(layout, tiny_config, fixtures_dir, reference_io):
    model, report = load_model(tiny_config, fixtures_dir, layout)
    assert report.missing == []
    with paddle.no_grad():
        out = model(paddle.to_tensor(reference_io["pixel_values"]), output_hidden_states=True)
    assert len(out.hidden_states) == tiny_config.num_layers + 1
    for i, hidden in enumerate(out.hidden_states):
        np.testing.assert_allclose(hidden.numpy(), reference_io[f"hidden_states.{i}"], atol=ATOL, rtol=0)
    np.testing.assert_allclose(
        out.last_hidden_state.numpy(), reference_io[f"hidden_states.{tiny_config.num_layers}"], atol=ATOL, rtol=0
    )


def test_layouts_are_detected(fixtures_dir):
    for layout in ("hf", "lavis", "paddlemix"):
        assert detect_layout(load_file(str(fixtures_dir / f"weights_{layout}.safetensors"))) == layout


def test_hf_post_layernorm_is_reported_not_silently_dropped(tiny_config, fixtures_dir):
    _, report = load_model(tiny_config, fixtures_dir, "hf")
    assert report.unexpected == ["post_layernorm.bias", "post_layernorm.weight"] or sorted(report.unexpected) == [
        "post_layernorm.bias",
        "post_layernorm.weight",
    ]


def test_extra_eva_clip_block_is_dropped_with_a_note(tiny_config, fixtures_dir):
    _, report = load_model(tiny_config, fixtures_dir, "lavis")
    assert report.unexpected == []
    assert any(f"[{tiny_config.num_layers}]" in note for note in report.notes)


def test_interpolated_positions_match_hf_at_runtime(tiny_config, fixtures_dir, reference_io):
    model, _ = load_model(tiny_config, fixtures_dir, "hf")
    pixels = paddle.to_tensor(reference_io["pixel_values_large"])
    with paddle.no_grad():
        out = model(pixels, interpolate_pos_encoding=True)
    np.testing.assert_allclose(
        out.last_hidden_state.numpy(), reference_io["large_last_hidden_state"], atol=ATOL, rtol=0
    )
    with pytest.raises(ValueError, match="84x84.*56x56"):
        model(pixels)


def test_interpolated_positions_match_hf_when_resized_at_load(tiny_config, fixtures_dir, reference_io):
    large = dataclasses.replace(tiny_config, image_size=84)
    model, report = load_model(large, fixtures_dir, "lavis")
    assert any("resized pos_embed" in note for note in report.notes)
    assert model.pos_embed.shape == [1, 37, tiny_config.hidden_size]
    with paddle.no_grad():
        out = model(paddle.to_tensor(reference_io["pixel_values_large"]))
    np.testing.assert_allclose(
        out.last_hidden_state.numpy(), reference_io["large_last_hidden_state"], atol=ATOL, rtol=0
    )


def test_interpolated_positions_match_hf_after_set_image_size(tiny_config, fixtures_dir, reference_io):
    model, _ = load_model(tiny_config, fixtures_dir, "paddlemix")
    model.set_image_size(84)
    with paddle.no_grad():
        out = model(paddle.to_tensor(reference_io["pixel_values_large"]))
    np.testing.assert_allclose(
        out.last_hidden_state.numpy(), reference_io["large_last_hidden_state"], atol=ATOL, rtol=0
    )


def test_export_to_hf_layout_round_trips(tiny_config, fixtures_dir):
    hf = load_file(str(fixtures_dir / "weights_hf.safetensors"))
    model, _ = load_model(tiny_config, fixtures_dir, "hf")
    exported = to_hf_state_dict({k: v.numpy() for k, v in model.state_dict().items()})
    assert set(exported) == set(hf) - {"post_layernorm.weight", "post_layernorm.bias"}
    for key, value in exported.items():
        if key.endswith("self_attn.qkv.bias"):
            # the key third is dropped (softmax ignores it); q and v survive exactly
            third = value.shape[0] // 3
            np.testing.assert_array_equal(value[:third], hf[key][:third])
            np.testing.assert_array_equal(value[2 * third :], hf[key][2 * third :])
            assert not value[third : 2 * third].any()
        else:
            np.testing.assert_array_equal(value, hf[key], err_msg=key)
    back = convert_state_dict(exported, num_heads=tiny_config.num_heads)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(back[key], value.numpy(), err_msg=key)


def test_eva_clip_final_norm_and_head_are_reported_unused(tiny_config, fixtures_dir, reference_io):
    """EVA-CLIP's visual tower (eva_vit_g.pth's source) ends in a norm and a CLIP head BLIP-2 does not use:
    LAVIS comments them out and loads with strict=False. They are left out and named in the report."""
    state = load_file(str(fixtures_dir / "weights_eva_clip.safetensors"))
    assert detect_layout(state) == "lavis"
    model, report = load_model(tiny_config, fixtures_dir, "eva_clip")
    assert sorted(report.unexpected) == ["head.bias", "head.weight", "norm.bias", "norm.weight"]
    assert report.missing == []
    assert any(f"[{tiny_config.num_layers}]" in note for note in report.notes)  # and its extra block dropped
    with paddle.no_grad():
        out = model(paddle.to_tensor(reference_io["pixel_values"]))
    np.testing.assert_allclose(
        out.last_hidden_state.numpy(), reference_io[f"hidden_states.{tiny_config.num_layers}"], atol=ATOL, rtol=0
    )
