"""Stage-2 training loss of the decoder-only model against a brute-force sum, as LAVIS's blip2_opt computes it."""

import numpy as np
import paddle
from safetensors.numpy import load_file

from blip2_core import Blip2ForConditionalGeneration


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
