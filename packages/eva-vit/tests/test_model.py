"""Behaviour of the encoder beyond numerical parity: sizes, recompute, freezing, casting, errors."""

import dataclasses

import numpy as np
import paddle
import pytest

from blip2_eva_vit import EvaVisionTransformer, EvaVitConfig, LayerNormFp32, load_pretrained


def test_defaults_are_blip2_eva_vit_g():
    config = EvaVitConfig.eva_vit_g()
    assert (config.patch_size, config.hidden_size, config.num_layers, config.num_heads) == (14, 1408, 39, 16)
    assert config.mlp_hidden_size == int(1408 * 4.3637) == 6144
    assert config.num_positions == 257
    assert EvaVitConfig(image_size=364).num_positions == 26 * 26 + 1


def test_eva_vit_g_parameter_count_matches_the_paper():
    # Count from shapes, without allocating the 1B-parameter model.
    c = EvaVitConfig.eva_vit_g()
    per_block = 4 * c.hidden_size + 3 * c.hidden_size**2 + 2 * c.hidden_size + c.hidden_size**2 + c.hidden_size
    per_block += 2 * c.hidden_size * c.mlp_hidden_size + c.mlp_hidden_size + c.hidden_size
    total = per_block * c.num_layers + c.hidden_size * (3 * 14 * 14 + 1) + c.hidden_size * (1 + 257)
    assert 0.98e9 < total < 0.99e9
    tiny = EvaVitConfig(image_size=28, hidden_size=16, num_layers=2, num_heads=2, mlp_hidden_size=24)
    model = EvaVisionTransformer(tiny)
    counted = sum(int(np.prod(p.shape)) for p in model.parameters())
    d, m = 16, 24
    expected_block = 4 * d + 3 * d * d + 2 * d + d * d + d + 2 * d * m + m + d
    assert counted == expected_block * 2 + d * (3 * 14 * 14 + 1) + d * (1 + 5)


def test_vit_l_variant_and_config_round_trip():
    config = EvaVitConfig.vit_l(image_size=364)
    assert (config.hidden_size, config.num_layers, config.mlp_hidden_size, config.image_size) == (1024, 24, 4096, 364)
    assert EvaVitConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown EvaVitConfig keys: \\['depth'\\]"):
        EvaVitConfig.from_dict({"depth": 3})
    with pytest.raises(ValueError, match="not divisible"):
        EvaVitConfig(hidden_size=30, num_heads=4)


def tiny(**overrides) -> EvaVitConfig:
    return EvaVitConfig(
        **{**dict(image_size=56, hidden_size=32, num_layers=3, num_heads=4, mlp_hidden_size=48), **overrides}
    )


def test_output_has_cls_and_patch_tokens():
    model = EvaVisionTransformer(tiny())
    out = model(paddle.randn([2, 3, 56, 56]))
    assert out.last_hidden_state.shape == [2, 1 + 16, 32]
    assert out.hidden_states is None


def saved_bytes(fn) -> int:
    """Bytes autograd keeps for backward while ``fn`` runs."""
    total = 0

    def pack(tensor):
        nonlocal total
        total += int(np.prod(tensor.shape)) * tensor.element_size()
        return tensor

    with paddle.autograd.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return total, out


def test_gradient_checkpointing_saves_less_and_gives_the_same_gradients():
    paddle.seed(0)
    plain = EvaVisionTransformer(tiny(num_layers=4))
    checkpointed = EvaVisionTransformer(tiny(num_layers=4, gradient_checkpointing=True))
    checkpointed.set_state_dict(plain.state_dict())
    pixels = paddle.randn([2, 3, 56, 56])
    plain_bytes, plain_out = saved_bytes(lambda: plain(pixels).last_hidden_state)
    ckpt_bytes, ckpt_out = saved_bytes(lambda: checkpointed(pixels).last_hidden_state)
    assert ckpt_bytes < plain_bytes / 3, (ckpt_bytes, plain_bytes)
    plain_out.square().mean().backward()
    ckpt_out.square().mean().backward()
    for (name, a), b in zip(plain.named_parameters(), checkpointed.parameters()):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-5, atol=1e-7, err_msg=name)


def test_checkpointing_is_skipped_in_eval_and_when_frozen():
    model = EvaVisionTransformer(tiny(gradient_checkpointing=True))
    pixels = paddle.randn([1, 3, 56, 56])
    model.freeze()
    assert all(p.stop_gradient for p in model.parameters())
    assert not model.training
    model.train()  # frozen weights and an input without gradient: nothing to recompute for
    out = model(pixels)
    assert out.last_hidden_state.stop_gradient


def test_cast_keeps_layer_norms_in_float32():
    model = EvaVisionTransformer(tiny()).cast("bfloat16")
    for layer in model.sublayers():
        for param in layer.parameters(include_sublayers=False):
            expected = paddle.float32 if isinstance(layer, LayerNormFp32) else paddle.bfloat16
            assert param.dtype == expected
    assert model.dtype == paddle.bfloat16


def test_shape_mismatch_names_the_key_and_both_shapes():
    model = EvaVisionTransformer(tiny())
    other = EvaVisionTransformer(tiny(mlp_hidden_size=40))
    with pytest.raises(ValueError, match=r"blocks\.0\.mlp\.fc1\.weight: checkpoint \(32, 40\) vs model \(32, 48\)"):
        load_pretrained(model, {k: v.numpy() for k, v in other.state_dict().items()})


def test_missing_keys_are_reported():
    model = EvaVisionTransformer(tiny())
    state = {k: v.numpy() for k, v in model.state_dict().items() if not k.startswith("blocks.2.")}
    report = load_pretrained(model, state)
    assert report.missing and all(k.startswith("blocks.2.") for k in report.missing)


def test_set_image_size_resizes_positions_and_config():
    model = EvaVisionTransformer(tiny())
    config = model.config
    model.set_image_size(84)
    assert model.pos_embed.shape == [1, 37, 32]
    assert config.image_size == 84 and config is model.config
    assert model(paddle.randn([1, 3, 84, 84])).last_hidden_state.shape == [1, 37, 32]
    with pytest.raises(ValueError, match="multiple of patch_size"):
        model.set_image_size(90)


def test_model_owns_a_copy_of_its_config():
    config = tiny()
    model = EvaVisionTransformer(config)
    model.set_image_size(84)
    assert config.image_size == 56 and dataclasses.replace(config, image_size=84) == model.config
