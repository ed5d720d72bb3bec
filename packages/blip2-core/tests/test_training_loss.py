"""Stage-2 training loss of the decoder-only model against a brute-force sum, as LAVIS's blip2_opt computes it."""

import numpy as np
import paddle
import pytest
from safetensors.numpy import load_file

from blip2_core import Blip2ForConditionalGeneration, Blip2Qformer


def brute_force_loss(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean over scored tokens of -log softmax(logits at the position before the token)[token]."""
    text_start = logits.shape[1] - labels.shape[1]  # the visual tokens come first
    terms = []
    for b in range(labels.shape[0]):
        for t in range(labels.shape[1]):
            if labels[b, t] != -100:
                row = logits[b, text_start + t - 1].astype(np.float64)
                terms.append(np.log(np.exp(row - row.max()).sum()) + row.max() - row[labels[b, t]])
    return float(np.mean(terms))


@paddle.no_grad()
def test_empty_prompt_scores_the_first_text_token_from_the_last_query(fixtures_dir):
    # LAVIS's stage-2 pre-training has no prompt: every text token is a target, the first one predicted by the
    # last query position. Before the fix the first token was dropped from the loss.
    model = Blip2ForConditionalGeneration.from_pretrained(fixtures_dir / "opt" / "hf")
    ref = load_file(str(fixtures_dir / "opt" / "io.safetensors"))
    pixels, ids, mask = (paddle.to_tensor(ref[k]) for k in ("pixel_values", "prompt_ids", "prompt_mask"))
    labels = Blip2ForConditionalGeneration.make_labels(ids, mask, [0] * ids.shape[0])
    out = model(pixels, ids, mask, labels=labels)
    expected = brute_force_loss(out.logits.numpy(), labels.numpy())
    np.testing.assert_allclose(float(out.loss), expected, rtol=1e-5)


def test_image_embeds_in_place_of_pixels_give_the_same_loss_and_gradients(fixtures_dir, stage1_dir):
    # A feature cache of the frozen ViT hands the models its output instead of the pixels: the loss and the
    # Q-Former's gradients must not change.
    ref = load_file(str(fixtures_dir / "opt" / "io.safetensors"))
    pixels, ids, mask = (paddle.to_tensor(ref[k]) for k in ("pixel_values", "prompt_ids", "prompt_mask"))
    model = Blip2ForConditionalGeneration.from_pretrained(fixtures_dir / "opt" / "hf")
    labels = Blip2ForConditionalGeneration.make_labels(ids, mask, [0] * ids.shape[0])
    with paddle.no_grad():
        embeds = model.vision_model(pixels).last_hidden_state
    results = []
    for image in ({"pixel_values": pixels}, {"image_embeds": embeds}):
        model.clear_gradients()
        loss = model(input_ids=ids, attention_mask=mask, labels=labels, **image).loss
        loss.backward()
        results.append((float(loss), model.qformer.query_tokens.grad.numpy().copy()))
    assert results[0][0] == results[1][0]
    np.testing.assert_array_equal(results[0][1], results[1][1])
    assert np.abs(results[0][1]).sum() > 0

    stage1 = Blip2Qformer.from_pretrained(stage1_dir)
    stage1.eval()  # no dropout: two runs of one batch must agree
    with paddle.no_grad():
        stage1_embeds = stage1.vision_model(pixels).last_hidden_state
    text = stage1.config.qformer_config
    text_ids = paddle.to_tensor(np.arange(2, 8).reshape(1, 6).repeat(pixels.shape[0], 0) % text.vocab_size)
    text_mask = paddle.ones_like(text_ids)
    with paddle.no_grad():
        paddle.seed(0)  # the ITM negatives are drawn at random
        from_pixels = stage1(pixels, text_ids, text_mask)
        paddle.seed(0)
        from_embeds = stage1(input_ids=text_ids, attention_mask=text_mask, image_embeds=stage1_embeds)
    assert float(from_pixels.loss) == float(from_embeds.loss)


def test_image_embeds_must_match_the_image_encoder(fixtures_dir):
    model = Blip2ForConditionalGeneration.from_pretrained(fixtures_dir / "opt" / "hf")
    ids = paddle.to_tensor([[2, 5, 6]])
    with pytest.raises(ValueError, match="image encoder width"):
        model(input_ids=ids, image_embeds=paddle.zeros([1, 5, 3]))
    with pytest.raises(ValueError, match="exactly one of"):
        model(pixel_values=paddle.zeros([1, 3, 4, 4]), input_ids=ids, image_embeds=paddle.zeros([1, 5, 3]))
