"""Stage-1 behaviour: layer layout, masks, each loss alone and together, negatives, temperature, errors."""

import dataclasses

import numpy as np
import paddle
import pytest

from blip2_qformer import QFormer, QFormerConfig, QFormerForPretraining, sample_hard_negatives
from blip2_qformer.pretraining import positives_matrix

TINY = QFormerConfig(
    vocab_size=60,
    hidden_size=16,
    num_layers=4,
    num_heads=2,
    intermediate_size=24,
    encoder_hidden_size=12,
    num_query_tokens=4,
    max_position_embeddings=32,
    embed_dim=8,
    bos_token_id=59,
)


def batch(size=3, text=6, seed=0):
    rng = np.random.RandomState(seed)
    images = paddle.to_tensor(rng.randn(size, 5, 12).astype("float32"))
    ids = rng.randint(1, 59, size=(size, text)).astype("int64")
    mask = np.ones((size, text), dtype="int64")
    mask[-1, text // 2 :] = 0
    ids[mask == 0] = 0
    return images, paddle.to_tensor(ids), paddle.to_tensor(mask)


def test_blip2_defaults():
    config = QFormerConfig()
    assert (config.num_layers, config.hidden_size, config.num_heads, config.intermediate_size) == (12, 768, 12, 3072)
    assert (config.num_query_tokens, config.embed_dim, config.layer_norm_eps, config.vocab_size) == (
        32,
        256,
        1e-12,
        30523,
    )
    assert [i for i in range(12) if config.has_cross_attention(i)] == [0, 2, 4, 6, 8, 10]


def test_blip2_stage1_parameter_count_is_the_papers():
    """~188M with the 1408-wide image features; counted on the real sizes."""
    paddle.set_default_dtype("float32")
    model = QFormerForPretraining(QFormerConfig())
    total = sum(int(np.prod(p.shape)) for p in model.parameters())
    assert 186e6 < total < 189e6, total


@pytest.mark.parametrize("freq, layers", [(2, [0, 2]), (3, [0, 3]), (1, [0, 1, 2, 3])])
def test_cross_attention_every_nth_layer(freq, layers):
    model = QFormer(dataclasses.replace(TINY, cross_attention_freq=freq))
    assert [i for i, layer in enumerate(model.layers) if hasattr(layer, "crossattention")] == layers


def test_number_of_queries_is_configurable():
    model = QFormer(dataclasses.replace(TINY, num_query_tokens=7))
    images, _, _ = batch()
    assert model(images).last_hidden_state.shape == [3, 7, 16]


def test_stage2_qformer_has_no_text_parts_and_says_so():
    config = dataclasses.replace(TINY, has_text_input=False)
    model = QFormer(config)
    names = [n for n, _ in model.named_parameters()]
    assert not any("word_embeddings" in n or ".ffn." in n for n in names)
    images, ids, mask = batch()
    assert model(images).last_hidden_state.shape == [3, 4, 16]
    with pytest.raises(ValueError, match="no word embeddings"):
        model(input_ids=ids, attention_mask=mask)
    with pytest.raises(ValueError, match="needs a Q-Former with text input"):
        QFormerForPretraining(config)


def test_queries_need_an_image_and_causal_needs_a_cache():
    model = QFormer(TINY)
    _, ids, mask = batch()
    with pytest.raises(ValueError, match="need image_embeds"):
        model(input_ids=ids, use_queries=True)
    with pytest.raises(ValueError, match="causal=True"):
        model(input_ids=ids, attention_mask=mask, causal=True)


def test_itg_text_is_causal_and_sees_the_image_only_through_the_queries():
    paddle.seed(1)
    model = QFormerForPretraining(TINY)
    model.eval()
    images, ids, mask = batch(size=2)
    normalized = model.qformer.ln_vision(images)
    query_out, _ = model.image_features(normalized)
    base = model.itg_logits(query_out, ids, mask).numpy()
    changed = ids.numpy().copy()
    changed[:, 3:] = (changed[:, 3:] + 1) % 59
    after = model.itg_logits(query_out, paddle.to_tensor(changed), mask).numpy()
    np.testing.assert_allclose(after[:, :3], base[:, :3], atol=1e-7, rtol=0)  # positions < 3 never see tokens >= 3
    assert np.abs(after[:, 3:] - base[:, 3:]).max() > 1e-3
    other_image, _ = model.image_features(model.qformer.ln_vision(images[::-1]))
    # small at random init (std 0.02), but not zero
    assert np.abs(model.itg_logits(other_image, ids, mask).numpy() - base).max() > 1e-6


@pytest.mark.parametrize("losses", [("itc",), ("itm",), ("itg",), ("itc", "itm", "itg")])
def test_each_loss_alone_and_together(losses):
    paddle.seed(0)
    model = QFormerForPretraining(TINY)
    images, ids, mask = batch()
    out = model(images, ids, mask, losses=losses)
    computed = {name: getattr(out, f"loss_{name}") for name in ("itc", "itm", "itg")}
    for name, value in computed.items():
        assert (value is not None) == (name in losses)
    np.testing.assert_allclose(float(out.loss), sum(float(v) for v in computed.values() if v is not None), rtol=1e-6)
    out.loss.backward()
    assert float(model.qformer.query_tokens.grad.abs().sum()) > 0
    assert (model.itm_head.weight.grad is not None) == ("itm" in losses)
    assert (model.lm_head.dense.weight.grad is not None) == ("itg" in losses)
    assert (model.text_proj.weight.grad is not None) == ("itc" in losses)


def test_unknown_loss_is_rejected():
    model = QFormerForPretraining(TINY)
    images, ids, mask = batch()
    with pytest.raises(ValueError, match="subset of"):
        model(images, ids, mask, losses=("itc", "mlm"))


def test_temperature_is_clamped_as_in_blip_and_albef():
    model = QFormerForPretraining(TINY)
    images, ids, mask = batch()
    model.temp.set_value(paddle.to_tensor(5.0))
    model(images, ids, mask, losses=("itc",))
    assert float(model.temp) == pytest.approx(0.5)
    model.temp.set_value(paddle.to_tensor(1e-6))
    model(images, ids, mask, losses=("itc",))
    assert float(model.temp) == pytest.approx(0.001)


def test_hard_negatives_skip_positives_and_favour_similar_samples():
    paddle.seed(0)
    sim = paddle.to_tensor([[9.0, 3.0, 0.0, 0.0], [0.0, 9.0, 0.0, 2.0]]).tile([500, 1])
    positives = paddle.to_tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]]).tile([500, 1])
    drawn = sample_hard_negatives(sim, positives).numpy().reshape(500, 2)
    assert not (drawn[:, 0] == 0).any() and not (drawn[:, 1] == 1).any()
    # softmax over the negatives: e^3 / (e^3 + 2) ~ 0.91 for column 1 of row 0
    assert 0.85 < (drawn[:, 0] == 1).mean() < 0.96
    assert 0.72 < (drawn[:, 1] == 3).mean() < 0.87  # e^2 / (e^2 + 2) ~ 0.79


def test_non_finite_similarities_draw_negatives_and_reach_the_loss():
    """Diverged weights: ITM's sampling does not fail (paddle's multinomial rejects NaN); the loss shows them."""
    paddle.seed(0)
    sim = paddle.to_tensor([[float("nan"), 1.0, 2.0], [0.0, 5.0, 1.0], [float("inf"), 0.0, 0.0]]).tile([200, 1])
    positives = paddle.to_tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]).tile([200, 1])
    drawn = sample_hard_negatives(sim, positives).numpy().reshape(200, 3)
    assert set(drawn[:, 0]) == {1, 2} and set(drawn[:, 2]) == {0, 1}  # uniform among the negatives
    assert not (drawn[:, 1] == 1).any()
    model = QFormerForPretraining(TINY)
    with paddle.no_grad():
        model.qformer.query_tokens.set_value(paddle.full_like(model.qformer.query_tokens, float("nan")))
    images, ids, mask = batch()
    assert not np.isfinite(float(model(images, ids, mask, losses=("itm",)).loss))


def test_image_ids_make_same_image_captions_positives():
    ids = paddle.to_tensor([7, 7, 9])
    expected = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1]], dtype="float32")
    np.testing.assert_array_equal(positives_matrix(3, 0, 1, ids).numpy(), expected)
    np.testing.assert_array_equal(positives_matrix(2, 1, 2, None).numpy(), [[0, 0, 1, 0], [0, 0, 0, 1]])
    model = QFormerForPretraining(TINY)
    images, tokens, mask = batch()
    with_ids = model(images, tokens, mask, image_ids=ids, losses=("itc", "itm"))
    assert np.isfinite(float(with_ids.loss))


def test_itm_needs_two_samples():
    model = QFormerForPretraining(TINY)
    images, ids, mask = batch(size=1)
    with pytest.raises(ValueError, match="at least 2 samples"):
        model(images, ids, mask, losses=("itm",))


def test_extract_features_modes():
    model = QFormerForPretraining(TINY)
    model.eval()
    images, ids, mask = batch()
    image = model.extract_features(images, mode="image")
    assert image.image_embeds.shape == [3, 4, 16] and image.image_embeds_proj.shape == [3, 4, 8]
    np.testing.assert_allclose(np.linalg.norm(image.image_embeds_proj.numpy(), axis=-1), 1.0, rtol=1e-5)
    text = model.extract_features(input_ids=ids, attention_mask=mask, mode="text")
    assert text.text_embeds.shape == [3, 6, 16] and text.text_embeds_proj.shape == [3, 6, 8]
    multimodal = model.extract_features(images, ids, mask, mode="multimodal")
    assert multimodal.multimodal_embeds.shape == [3, 4, 16]
    assert model.itm_logits(images, ids, mask).shape == [3, 2]
    with pytest.raises(ValueError, match="needs image_embeds"):
        model.extract_features(input_ids=ids, mode="image")
    with pytest.raises(ValueError, match="mode must be"):
        model.extract_features(images, mode="both")


def test_dropout_only_in_training():
    model = QFormer(TINY)
    images, _, _ = batch()
    model.eval()
    np.testing.assert_array_equal(model(images).last_hidden_state.numpy(), model(images).last_hidden_state.numpy())
    model.train()
    assert np.abs(model(images).last_hidden_state.numpy() - model(images).last_hidden_state.numpy()).max() > 0
